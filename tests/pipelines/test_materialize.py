"""Materialising through Dagster on the embedded PostgreSQL: files, run records, asset checks."""

import os
import subprocess
import sys
from datetime import date, timedelta

import dagster as dg
import pyarrow as pa
import pytest
from psycopg import sql

from tagflow.assets.partitions import TenantDays, tenant_day_key
from tagflow.cli.runs import materialize_days
from tagflow.errors import InvalidTimeRange, UnknownTenant
from tagflow.io_managers import DatasetStore
from tagflow.pipelines.definitions import build_definitions
from tagflow.schemas.registry import DATASETS, DATED
from tagflow.settings import Settings
from tests.stores import read_days


def check_evaluations(instance: dg.DagsterInstance, run_id: str) -> dict[str, bool]:
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return {
        e.dagster_event.event_specific_data.asset_key.to_user_string(): (
            e.dagster_event.event_specific_data.passed
        )
        for e in events
    }


@pytest.fixture(scope="module")
def materialised(small_plant, pg_url, tmp_path_factory):
    """Both generated tenants × 3 days materialised in process into a temp store."""
    root = tmp_path_factory.mktemp("store")
    instance = dg.DagsterInstance.ephemeral()
    start, end = small_plant.start.date(), small_plant.end.date()
    runs = []
    for tenant in small_plant.tenants:
        runs += materialize_days(
            tenant.tenant, start, end, instance, Settings(source_url=pg_url, store=str(root))
        )
    return instance, root, runs


def test_every_partition_materialises_with_all_checks_passing(materialised, small_plant):
    instance, root, runs = materialised
    assert len(runs) == 2 * 3 and all(run.success for run in runs)
    for run in runs:
        assert check_evaluations(instance, run.run_id) == {name: True for name in DATASETS}
    store = DatasetStore(root)
    for tenant in small_plant.tenants:
        assert store.read("tags", tenant.tenant).num_rows == tenant.tags
        for dataset in DATED:
            days = store.materialised_days(dataset, tenant.tenant)
            assert days == [date(2026, 3, 1) + timedelta(days=n) for n in range(3)]


def source_rows_in_range(admin_conn, tenant: str, start, end) -> int:
    query = sql.SQL(
        "SELECT (SELECT count(*) FROM {s}.tag_data WHERE tag_value_changed_at >= %(a)s"
        " AND tag_value_changed_at < %(b)s) + (SELECT count(*) FROM {s}.tag_data_str"
        " WHERE tag_value_changed_at >= %(a)s AND tag_value_changed_at < %(b)s)"
    ).format(s=sql.Identifier(tenant))
    return admin_conn.execute(query, {"a": start, "b": end}).fetchone()[0]


def test_rows_in_equal_rows_kept_plus_counted_drops(materialised, small_plant, admin_conn):
    instance, root, _ = materialised
    store = DatasetStore(root)
    records = instance.fetch_materializations(dg.AssetKey("transitions"), limit=1000).records
    for tenant in small_plant.tenants:
        days = [date(2026, 3, n) for n in (1, 2, 3)]
        kept = read_days(store, "transitions", tenant.tenant, days).num_rows
        dropped = 0
        for record in records:
            materialization = record.asset_materialization
            key = TenantDays.of(Settings()).definition.get_partition_key_from_str(
                materialization.partition
            )
            if key.keys_by_dimension["tenant"] == tenant.tenant:
                meta = materialization.metadata
                dropped += meta["duplicates_dropped"].value + meta["orphans_skipped"].value
        rows_in = source_rows_in_range(
            admin_conn, tenant.tenant, small_plant.start, small_plant.end
        )
        assert dropped > 0  # the generator writes duplicate timestamps
        assert kept + dropped == rows_in


def run_spans_check(instance, settings: Settings, tenant: str) -> list:
    """The spans check of one tenant-day run on its own, as from the UI."""
    job = build_definitions(settings).resolve_job_def("all_assets")
    check_only = job.get_subset(
        asset_selection=set(),
        asset_check_selection={dg.AssetCheckKey(dg.AssetKey("spans"), "audited_file_intact")},
    )
    result = check_only.execute_in_process(
        partition_key=tenant_day_key(tenant, "2026-03-02"), instance=instance, raise_on_error=False
    )
    return result.get_asset_check_evaluations()


def test_a_replaced_or_truncated_file_fails_its_check(materialised, small_plant, pg_url):
    instance, root, _ = materialised
    tenant = small_plant.tenants[0].tenant
    settings = Settings(source_url=pg_url, store=str(root))
    store = DatasetStore(root)
    (intact,) = run_spans_check(instance, settings, tenant)
    assert intact.passed, intact.metadata["verdict"].value

    # Replaced by a valid file of the same rows in another order (what it was audited for
    # no longer holds, and neither does its content).
    spans = store.read("spans", tenant, date(2026, 3, 2))
    reversed_rows = spans.take(pa.array(range(spans.num_rows - 1, -1, -1)))
    store.write("spans", tenant, date(2026, 3, 2), reversed_rows)
    (replaced,) = run_spans_check(instance, settings, tenant)
    assert (replaced.asset_key.to_user_string(), replaced.passed) == ("spans", False)
    assert "differs from what was written" in replaced.metadata["verdict"].value

    path = store.partition_path("spans", tenant, date(2026, 3, 2)).path
    with open(path, "r+b") as handle:
        handle.truncate(handle.seek(0, 2) // 2)
    (truncated,) = run_spans_check(instance, settings, tenant)
    assert not truncated.passed
    assert "not a readable Parquet file" in truncated.metadata["verdict"].value


def test_unknown_tenant_and_bad_range_fail_before_any_run(pg_url, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    with pytest.raises(UnknownTenant):
        materialize_days(
            "nobody_here", date(2026, 3, 1), date(2026, 3, 2), instance, Settings(source_url=pg_url)
        )
    with pytest.raises(InvalidTimeRange):
        materialize_days(
            "nobody_here", date(2026, 3, 2), date(2026, 3, 2), instance, Settings(source_url=pg_url)
        )
    assert instance.get_runs() == []


def test_cli_materialize_writes_files_and_records_a_successful_run(small_plant, pg_url, tmp_path):
    tenant = small_plant.tenants[1].tenant
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "TAGFLOW_STORE": str(tmp_path / "store"),
        "TAGFLOW_SOURCE_URL": pg_url,
    }
    command = [sys.executable, "-m", "tagflow.cli", "materialize", "--tenant", tenant,
               "--start", "2026-03-02", "--end", "2026-03-03"]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    store = DatasetStore(tmp_path / "store")
    for dataset in DATED:
        assert store.materialised_days(dataset, tenant) == [date(2026, 3, 2)]
    instance = dg.DagsterInstance.from_config(str(tmp_path / "dagster"))
    runs = instance.get_runs()
    assert [run.status for run in runs] == [dg.DagsterRunStatus.SUCCESS]
    assert runs[0].tags["dagster/partition/tenant"] == tenant


def test_cli_rejects_hostile_tenant_with_clear_error(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster")}
    command = [sys.executable, "-m", "tagflow.cli", "materialize", "--tenant",
               "x; drop schema acme", "--start", "2026-03-02", "--end", "2026-03-03",
               "--store", str(tmp_path / "store")]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "invalid tenant name" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "store").exists()
