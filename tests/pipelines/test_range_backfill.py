"""Range backfills: one Dagster run covers many days of a tenant and writes each day's files,
equal byte for byte to materialising each day on its own."""

from datetime import date, timedelta

import dagster as dg

from tagflow.cli.runs import materialize_days
from tagflow.io_managers import DatasetStore
from tagflow.schemas.registry import DATASETS
from tagflow.settings import Settings
from tests.pipelines.conftest import DAYS, START
from tests.pipelines.test_materialize import DATED, source_rows_in_range


def partition_checks(instance: dg.DagsterInstance, run_id: str) -> dict[tuple[str, str], bool]:
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    out = {}
    for event in events:
        data = event.dagster_event.event_specific_data
        out[(data.asset_key.to_user_string(), str(data.partition))] = data.passed
    return out


def test_ten_days_in_two_runs_equal_daily_runs_byte_for_byte(ten_days, pg_url, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    end = START + timedelta(days=DAYS)
    ranged = materialize_days(
        ten_days,
        START,
        end,
        instance,
        Settings(source_url=pg_url, store=str(tmp_path / "ranged")),
        days_per_run=5,
    )
    assert [len(run.days) for run in ranged] == [5, 5] and all(run.success for run in ranged)
    daily = materialize_days(
        ten_days, START, end, instance, Settings(source_url=pg_url, store=str(tmp_path / "daily"))
    )
    assert len(daily) == DAYS and all(run.success for run in daily)

    for dataset in DATED:
        for n in range(DAYS):
            day = START + timedelta(days=n)
            paths = [
                DatasetStore(tmp_path / kind).partition_path(dataset, ten_days, day).path
                for kind in ("ranged", "daily")
            ]
            with open(paths[0], "rb") as ranged_file, open(paths[1], "rb") as daily_file:
                assert ranged_file.read() == daily_file.read(), f"{dataset} {day}"

    # Every check ran for every day of each range run (an evaluation per tenant-day, plus
    # the step's own result over the range), and passed.
    for run in ranged:
        checks = partition_checks(instance, run.run_id)
        days = {f"{day.isoformat()}|{ten_days}" for day in run.days}
        assert {key for key in checks if key[1] != "None"} == {
            (dataset, day) for dataset in DATASETS for day in days
        }
        assert len(checks) == len(DATASETS) * (len(days) + 1)
        assert all(checks.values())


def test_range_run_reports_row_accounting_per_day(ten_days, pg_url, admin_conn, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    (run,) = materialize_days(
        ten_days,
        START,
        START + timedelta(days=4),
        instance,
        Settings(source_url=pg_url, store=str(tmp_path)),
        days_per_run=4,
    )
    assert run.success and len(run.days) == 4
    record = instance.fetch_materializations(dg.AssetKey("transitions"), limit=10).records[0]
    per_day = record.asset_materialization.metadata["days"].value
    assert len(per_day) == 4
    for key, figures in per_day.items():
        day = date.fromisoformat(key.split()[1])
        rows_in = source_rows_in_range(admin_conn, ten_days, day, day + timedelta(days=1))
        assert figures["rows_in"] == rows_in
        assert (
            figures["dagster/row_count"]
            + figures["duplicates_dropped"]
            + figures["orphans_skipped"]
            == rows_in
        )
