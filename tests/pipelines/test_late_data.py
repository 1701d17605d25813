"""Late-arriving rows: the source fingerprint recorded as the data version, and the sensor that
re-materialises exactly the tenant-days a late row changes."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest
from psycopg import sql

from tagflow.assets.resources import SourceDatabase
from tagflow.cli.runs import materialize_days
from tagflow.pipelines.sensors import build_late_data_sensor
from tagflow.settings import Settings
from tagflow.source.connection import connect
from tagflow.source.fingerprints import day_fingerprint
from tests.conftest import drop_tenant
from tests.pipelines.conftest import recorded_source_version

NOW = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def insert(admin_conn, tenant: str, rows: list[tuple[int, datetime, float]]) -> None:
    table = sql.SQL("{}.tag_data").format(sql.Identifier(tenant))
    for row in rows:
        admin_conn.execute(sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(table), row)


@pytest.fixture
def tenant_three_days(make_tenant, admin_conn, pg_url, tmp_path):
    """Tag 1 changes on 03-01 and 03-03 only; tag 2 changes every day at noon. Materialised
    for 03-01..03-03 into a persistent test instance."""
    tenant = make_tenant().name
    names = sql.SQL("INSERT INTO {}.tag_names (normalized_name) VALUES ('one'), ('two')")
    admin_conn.execute(names.format(sql.Identifier(tenant)))
    insert(admin_conn, tenant, [(1, at(1, 10), 1.0), (1, at(3, 10), 2.0)])
    insert(admin_conn, tenant, [(2, at(d, 12), float(d)) for d in (1, 2, 3)])
    with dg.instance_for_test() as instance:
        runs = materialize_days(
            tenant,
            date(2026, 3, 1),
            date(2026, 3, 4),
            instance,
            Settings(source_url=pg_url, store=str(tmp_path)),
        )
        assert all(run.success for run in runs)
        yield tenant, instance


def tick(instance, pg_url):
    sensor = build_late_data_sensor(Settings(late_data_lookback_days=7), clock=lambda: NOW)
    context = dg.build_sensor_context(
        instance=instance, resources={"source": SourceDatabase(url=pg_url)}
    )
    result = sensor(context)
    return [] if isinstance(result, dg.SkipReason) else result


def requested_days(requests) -> list[str]:
    return sorted(r.partition_key.keys_by_dimension["date"] for r in requests)


def test_late_rows_rerun_exactly_the_days_they_change(
    tenant_three_days, admin_conn, pg_url, tmp_path
):
    """One materialisation, several late arrivals (each step re-materialises what the sensor
    asked for, so the next step starts from a settled state)."""
    tenant, instance = tenant_three_days
    with connect(pg_url) as conn:
        fingerprint = day_fingerprint(conn, tenant, at(2, 0), at(3, 0)).version
    # Each partition records the source fingerprint it was built from as its data version.
    assert recorded_source_version(instance, tenant, "2026-03-02") == fingerprint
    assert tick(instance, pg_url) == []  # nothing changed

    # Tag 2's last row before 03-02 becomes this one (03-02's carry-in changes); tag 2
    # changes again on 03-02 at noon, so 03-03's carry-in is untouched.
    insert(admin_conn, tenant, [(2, at(1, 20), 7.0)])
    requests = tick(instance, pg_url)
    assert requested_days(requests) == ["2026-03-01", "2026-03-02"]
    assert all(r.tags["tagflow/trigger"] == "late_data" for r in requests)
    assert tick(instance, pg_url)[0].run_key == requests[0].run_key  # same state, same key
    rerun(tenant, instance, pg_url, tmp_path, requests)
    assert tick(instance, pg_url) == []

    # Tag 1 has no rows on 03-02 and next changes on 03-03 at 10:00: the late value is the
    # carry-in of both later days.
    insert(admin_conn, tenant, [(1, at(1, 20), 5.0)])
    assert requested_days(tick(instance, pg_url)) == ["2026-03-01", "2026-03-02", "2026-03-03"]


def requested_tenant_days(requests) -> list[tuple[str, str]]:
    keys = [r.partition_key.keys_by_dimension for r in requests]
    return sorted((k["tenant"], k["date"]) for k in keys)


def rerun(tenant, instance, pg_url, root, requests) -> None:
    for day in requested_days(requests):
        start = date.fromisoformat(day)
        runs = materialize_days(
            tenant,
            start,
            start + timedelta(days=1),
            instance,
            Settings(source_url=pg_url, store=str(root)),
        )
        assert all(run.success for run in runs)


def test_a_tenant_whose_schema_disappeared_does_not_hide_the_late_rows_of_the_others(
    tenant_three_days, make_tenant, admin_conn, pg_url, tmp_path, capfd
):
    """Issue 17: the tick raised UnknownTenant for a registered tenant whose schema was gone,
    so the late rows of every other tenant went unnoticed for as long as the lookback lasts.
    Three healthy tenants and one dropped, all materialised by real runs: the healthy ones
    get exactly the requests a late row gets them alone, the dropped one is reported."""
    tenant, instance = tenant_three_days
    one_day = []
    for _ in range(3):
        name = make_tenant().name
        names = sql.SQL("INSERT INTO {}.tag_names (normalized_name) VALUES ('one')")
        admin_conn.execute(names.format(sql.Identifier(name)))
        insert(admin_conn, name, [(1, at(2, 10), 1.0), (1, at(3, 10), 2.0)])
        runs = materialize_days(
            name,
            date(2026, 3, 3),
            date(2026, 3, 4),
            instance,
            Settings(source_url=pg_url, store=str(tmp_path)),
        )
        assert all(run.success for run in runs)
        one_day.append(name)
    gone, healthy = one_day[0], one_day[1:]

    # As in the first test: 03-01 and 03-02 for `tenant`; the late row of 03-03 for the others.
    insert(admin_conn, tenant, [(2, at(1, 20), 7.0)])
    for name in [gone, *healthy]:
        insert(admin_conn, name, [(1, at(3, 20), 3.0)])
    drop_tenant(admin_conn, gone)
    capfd.readouterr()

    requests = tick(instance, pg_url)
    assert requested_tenant_days(requests) == sorted(
        [(tenant, "2026-03-01"), (tenant, "2026-03-02")]
        + [(name, "2026-03-03") for name in healthy]
    )
    log = capfd.readouterr().err
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, log
    assert f"tenant {gone!r}" in warnings[0] and "UnknownTenant" in warnings[0]
    assert pg_url not in log
