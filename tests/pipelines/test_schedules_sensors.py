"""The daily schedule and the tenant discovery sensor, evaluated with Dagster's context builders
on an ephemeral instance; the sensor reads tenants from the real (embedded) PostgreSQL."""

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from tagflow.assets.partitions import TENANT_DIMENSION, tenant_day_key
from tagflow.assets.resources import SourceDatabase
from tagflow.errors import UnknownTenant
from tagflow.pipelines.definitions import build_definitions
from tagflow.pipelines.schedules import (
    addressable_tenants,
    build_daily_schedule,
    describe_tenant_error,
    summarise_failures,
)
from tagflow.pipelines.sensors import (
    DiscoveryState,
    PendingBackfill,
    build_tenant_discovery_sensor,
    plan_discovery,
)
from tagflow.settings import Settings
from tests.conftest import drop_tenant

EARLY_ROW = datetime(2026, 2, 15, 6, 0, tzinfo=UTC)


@pytest.fixture
def make_tenant_with_history(make_tenant, admin_conn):
    """Tenants whose first row (at `first_row`, default before every floor used here) makes
    the sensor backfill them; make_tenant alone gives a tenant without rows."""

    def make(first_row: datetime = EARLY_ROW) -> str:
        tenant = make_tenant().name
        schema = sql.Identifier(tenant)
        admin_conn.execute(
            sql.SQL("INSERT INTO {}.tag_names (normalized_name, birth_at) VALUES ('x', %s)").format(
                schema
            ),
            (first_row,),
        )
        admin_conn.execute(
            sql.SQL("INSERT INTO {}.tag_data VALUES (1, %s, 1.0)").format(schema), (first_row,)
        )
        return tenant

    return make


def keys(requests) -> list[tuple[str, str]]:
    """(run_key, partition_key) of each run request, in order."""
    return [(r.run_key, r.partition_key) for r in requests]


def expected(tenant_days: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """What a run request for each (tenant, day) must carry: a run key per tenant-day and the
    multi-partition key, whose string form is "day|tenant" (dimensions in name order)."""
    return [(f"{tenant}|{day}", f"{day}|{tenant}") for tenant, day in tenant_days]


# ---------------------------------------------------------------- schedule


def discovery(floor: str, days_per_tick: int) -> Settings:
    """Settings for a discovery sensor backfilling from `floor`, `days_per_tick` at a time."""
    return Settings(backfill_floor=date.fromisoformat(floor), backfill_days_per_tick=days_per_tick)


@pytest.fixture
def persistent_instance() -> Iterator[dg.DagsterInstance]:
    """A throwaway on-disk instance: schedule contexts refuse an ephemeral one (the daemon
    hands schedules a reference to a persistent instance)."""
    with dg.instance_for_test() as instance:
        yield instance


daily_schedule = build_daily_schedule(Settings())


def test_schedule_defaults_to_half_past_midnight_utc():
    assert daily_schedule.cron_schedule == "30 0 * * *"
    assert daily_schedule.execution_timezone == "UTC"
    assert daily_schedule.job_name == "all_assets"
    custom = build_daily_schedule(Settings.from_env({"TAGFLOW_SCHEDULE_CRON": "15 3 * * *"}))
    assert custom.cron_schedule == "15 3 * * *"


def test_schedule_requests_yesterday_for_every_registered_tenant(persistent_instance):
    instance = persistent_instance
    instance.add_dynamic_partitions(TENANT_DIMENSION, ["plant_b", "plant_a"])
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=datetime(2026, 3, 4, 0, 30, tzinfo=UTC)
    )
    requests = daily_schedule(context)
    assert keys(requests) == expected([("plant_a", "2026-03-03"), ("plant_b", "2026-03-03")])
    assert requests[0].partition_key == tenant_day_key("plant_a", "2026-03-03")
    assert requests[0].partition_key.keys_by_dimension == {
        "tenant": "plant_a",
        "date": "2026-03-03",
    }
    # Dagster's own tick evaluation, with the code location, accepts the keys for its job.
    context = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2026, 3, 4, 0, 30, tzinfo=UTC),
        repository_def=build_definitions(Settings(source_url="unused")).get_repository_def(),
    )
    data = daily_schedule.evaluate_tick(context)
    assert [r.partition_key for r in data.run_requests] == [
        "2026-03-03|plant_a",
        "2026-03-03|plant_b",
    ]


def test_schedule_yesterday_is_the_utc_day_before_the_scheduled_time(persistent_instance):
    instance = persistent_instance
    instance.add_dynamic_partitions(TENANT_DIMENSION, ["plant_a"])
    # 20:30 on 3 March in New York is 01:30 on 4 March in UTC: yesterday is 3 March, not 2 March.
    new_york_evening = datetime(2026, 3, 3, 20, 30, tzinfo=timezone(timedelta(hours=-5)))
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=new_york_evening
    )
    assert keys(daily_schedule(context)) == expected([("plant_a", "2026-03-03")])
    # A tick just before midnight UTC still asks for the day before its own day.
    late = datetime(2026, 3, 4, 23, 59, tzinfo=UTC)
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=late)
    assert keys(daily_schedule(context)) == expected([("plant_a", "2026-03-03")])


def test_schedule_asks_for_no_day_past_the_partitions_end(persistent_instance):
    instance = persistent_instance
    instance.add_dynamic_partitions(TENANT_DIMENSION, ["plant_a"])
    # TAGFLOW_END_DATE=2026-03-03: 2 March is the last day.
    ended = build_daily_schedule(Settings(end_date=date(2026, 3, 3)))
    at = {day: datetime(2026, 3, day, 0, 30, tzinfo=UTC) for day in (3, 4)}
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=at[3])
    assert keys(ended(context)) == expected([("plant_a", "2026-03-02")])
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=at[4])
    skipped = ended(context)
    assert isinstance(skipped, dg.SkipReason)
    assert "2026-03-03 is after the partitions' last day" in (skipped.skip_message or "")


def test_schedule_skips_without_tenants(persistent_instance):
    context = dg.build_schedule_context(
        instance=persistent_instance,
        scheduled_execution_time=datetime(2026, 3, 4, 0, 30, tzinfo=UTC),
    )
    assert isinstance(daily_schedule(context), dg.SkipReason)


# ---------------------------------------------------------------- tenant discovery sensor

# The sensor's clock: noon on 4 March, so the last complete day is 3 March.
NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
def instance(pg_url: str) -> Iterator[dg.DagsterInstance]:
    """A throwaway on-disk instance that already knows every tenant in the test database, so
    only the tenants a test creates are new (other tests' tenants may share the server). On
    disk because Dagster resolves a tick's partitioned run requests only against an instance
    it holds a reference to."""
    with dg.instance_for_test() as instance:
        existing = SourceDatabase(url=pg_url).reader().list_tenants()
        if existing:
            instance.add_dynamic_partitions(TENANT_DIMENSION, existing)
        yield instance


def tick(
    sensor: dg.SensorDefinition, instance: dg.DagsterInstance, pg_url: str, cursor: str | None
) -> dg.SensorResult:
    """Evaluate one tick and apply its partition additions, as the daemon would."""
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"source": SourceDatabase(url=pg_url)}
    )
    result = sensor(context)
    for request in result.dynamic_partitions_requests:
        assert isinstance(request, dg.AddDynamicPartitionsRequest)
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def test_new_tenants_are_registered_and_backfilled_a_slice_per_tick(
    instance, pg_url, make_tenant_with_history
):
    first, second = sorted([make_tenant_with_history(), make_tenant_with_history()])
    sensor = build_tenant_discovery_sensor(discovery("2026-03-01", 4), clock=lambda: NOW)

    one = tick(sensor, instance, pg_url, None)
    assert [
        (r.partitions_def_name, list(r.partition_keys)) for r in one.dynamic_partitions_requests
    ] == [(TENANT_DIMENSION, [first, second])]
    assert keys(one.run_requests) == expected(
        [
            (first, "2026-03-01"),
            (first, "2026-03-02"),
            (first, "2026-03-03"),
            (second, "2026-03-01"),
        ]
    )
    assert json.loads(one.cursor) == {
        "backfill": {second: {"next": "2026-03-02", "last": "2026-03-03"}},
        "missing": [],
    }

    two = tick(sensor, instance, pg_url, one.cursor)
    assert two.dynamic_partitions_requests == []
    assert keys(two.run_requests) == expected([(second, "2026-03-02"), (second, "2026-03-03")])
    assert json.loads(two.cursor) == {"backfill": {}, "missing": []}

    three = tick(sensor, instance, pg_url, two.cursor)
    assert three.run_requests == [] and three.dynamic_partitions_requests == []
    assert three.skip_reason is not None
    assert set(instance.get_dynamic_partitions(TENANT_DIMENSION)) >= {first, second}


def test_backfill_ends_at_the_day_before_discovery_and_leaves_later_days_to_the_schedule(
    instance, pg_url, make_tenant_with_history
):
    tenant = make_tenant_with_history()
    clock = [NOW]
    sensor = build_tenant_discovery_sensor(discovery("2026-03-02", 1), clock=lambda: clock[0])
    one = tick(sensor, instance, pg_url, None)
    assert keys(one.run_requests) == expected([(tenant, "2026-03-02")])
    # A day later the backfill finishes 3 March; 4 March is the schedule's (tenant registered).
    clock[0] = NOW + timedelta(days=1)
    two = tick(sensor, instance, pg_url, one.cursor)
    assert keys(two.run_requests) == expected([(tenant, "2026-03-03")])
    three = tick(sensor, instance, pg_url, two.cursor)
    assert three.run_requests == []
    assert json.loads(three.cursor) == {"backfill": {}, "missing": []}


def test_backfill_of_a_new_tenant_stops_at_the_partitions_end(
    instance, pg_url, make_tenant_with_history
):
    tenant = make_tenant_with_history()
    settings = Settings(
        backfill_floor=date(2026, 3, 1), backfill_days_per_tick=31, end_date=date(2026, 3, 3)
    )
    one = tick(build_tenant_discovery_sensor(settings, clock=lambda: NOW), instance, pg_url, None)
    days = {
        key.keys_by_dimension["date"]
        for key in (r.partition_key for r in one.run_requests)
        if key.keys_by_dimension["tenant"] == tenant
    }
    # from the floor through the last partition day, not through yesterday (3 March)
    assert days == {"2026-03-01", "2026-03-02"}


def test_dagster_accepts_run_requests_for_tenants_added_in_the_same_tick(
    instance, pg_url, make_tenant_with_history
):
    tenant = make_tenant_with_history()
    sensor = build_tenant_discovery_sensor(discovery("2026-03-02", 31), clock=lambda: NOW)
    context = dg.build_sensor_context(
        instance=instance,
        # The reference lets Dagster look up the instance's partitions while resolving keys.
        instance_ref=instance.get_ref(),
        resources={"source": SourceDatabase(url=pg_url)},
        repository_def=build_definitions(Settings(source_url=pg_url)).get_repository_def(),
    )
    data = sensor.evaluate_tick(context)
    assert [r.partition_key for r in data.run_requests] == [
        tenant_day_key(tenant, "2026-03-02"),
        tenant_day_key(tenant, "2026-03-03"),
    ]
    assert [r.partitions_def_name for r in data.dynamic_partitions_requests] == [TENANT_DIMENSION]


def test_floor_after_yesterday_registers_without_backfill(
    instance, pg_url, make_tenant_with_history
):
    tenant = make_tenant_with_history()
    sensor = build_tenant_discovery_sensor(discovery("2026-03-04", 31), clock=lambda: NOW)
    result = tick(sensor, instance, pg_url, None)
    assert [list(r.partition_keys) for r in result.dynamic_partitions_requests] == [[tenant]]
    assert result.run_requests == []
    assert json.loads(result.cursor) == {"backfill": {}, "missing": []}


def test_disappeared_tenant_is_reported_not_deleted_and_its_backfill_stops(
    instance, pg_url, make_tenant_with_history, admin_conn, capfd
):
    leaving = make_tenant_with_history()
    sensor = build_tenant_discovery_sensor(discovery("2026-03-01", 1), clock=lambda: NOW)
    one = tick(sensor, instance, pg_url, None)
    assert keys(one.run_requests) == expected([(leaving, "2026-03-01")])
    assert json.loads(one.cursor)["backfill"] == {
        leaving: {"next": "2026-03-02", "last": "2026-03-03"}
    }

    drop_tenant(admin_conn, leaving)
    never_in_source = f"t_{uuid.uuid4().hex[:12]}"
    instance.add_dynamic_partitions(TENANT_DIMENSION, [never_in_source])
    capfd.readouterr()
    two = tick(sensor, instance, pg_url, one.cursor)
    assert two.run_requests == [] and two.dynamic_partitions_requests == []
    assert json.loads(two.cursor) == {
        "backfill": {},
        "missing": sorted([leaving, never_in_source]),
    }
    # Kept: the sensor never asks to delete a partition.
    assert {leaving, never_in_source} <= set(instance.get_dynamic_partitions(TENANT_DIMENSION))
    log = capfd.readouterr().err
    assert f"tenant {leaving!r} is no longer in the source" in log
    assert f"tenant {never_in_source!r} is no longer in the source" in log

    # Reported once: the next tick does not warn again.
    tick(sensor, instance, pg_url, two.cursor)
    assert "no longer in the source" not in capfd.readouterr().err


def test_backfill_starts_at_the_first_row_and_skips_a_tenant_without_rows(
    instance, pg_url, make_tenant, make_tenant_with_history
):
    late = make_tenant_with_history(datetime(2026, 3, 2, 23, 59, 59, tzinfo=UTC))
    empty = make_tenant().name
    sensor = build_tenant_discovery_sensor(discovery("2026-03-01", 31), clock=lambda: NOW)
    context = dg.build_sensor_context(
        instance=instance, resources={"source": SourceDatabase(url=pg_url)}
    )
    result = sensor(context)
    added = set(result.dynamic_partitions_requests[0].partition_keys)
    assert {late, empty} <= added
    mine = [k for k in keys(result.run_requests) if late in k[0] or empty in k[0]]
    assert mine == expected([(late, "2026-03-02"), (late, "2026-03-03")])


# ---------------------------------------------------------------- one tenant's failure


def test_plan_discovery_leaves_a_tenant_it_could_not_read_new_and_reports_it():
    """A failed tenant is neither registered nor queued (its history's start is unknown), and
    takes no backfill slot from the others; the next plan without the failure treats it as
    any new tenant."""
    failed = {"b": "DataError: timestamp too small (before year 1)"}
    first_days = {"a": date(2026, 3, 2), "c": date(2026, 3, 3)}
    tick = plan_discovery(
        ["a", "b", "c"],
        [],
        DiscoveryState(),
        date(2026, 3, 1),
        date(2026, 3, 3),
        2,
        first_days=first_days,
        failed=failed,
    )
    assert tick.new_tenants == ["a", "c"]
    assert tick.backfill_days == [("a", "2026-03-02"), ("a", "2026-03-03")]
    assert tick.state == DiscoveryState(
        {"c": PendingBackfill(date(2026, 3, 3), date(2026, 3, 3))}, [], failed
    )
    assert DiscoveryState.from_cursor(tick.state.to_cursor()) == tick.state

    retry = plan_discovery(
        ["a", "b", "c"],
        ["a", "c"],
        tick.state,
        date(2026, 3, 1),
        date(2026, 3, 3),
        2,
        first_days={"b": date(2026, 3, 1)},
    )
    assert retry.new_tenants == ["b"]
    assert retry.backfill_days == [("b", "2026-03-01"), ("b", "2026-03-02")]
    assert json.loads(retry.state.to_cursor()) == {
        "backfill": {
            "b": {"next": "2026-03-03", "last": "2026-03-03"},
            "c": {"next": "2026-03-03", "last": "2026-03-03"},
        },
        "missing": [],
    }


def test_addressable_tenants_sets_aside_names_no_run_can_read():
    valid, invalid = addressable_tenants(["plant_b", "plant|x", "plant_a", "Plant-A"])
    assert valid == ["plant_a", "plant_b"]
    assert sorted(invalid) == ["Plant-A", "plant|x"]
    assert all(error.startswith("InvalidName: invalid tenant name") for error in invalid.values())


def test_tenant_errors_are_described_without_sql_or_connection_details(admin_conn, make_tenant):
    """Real driver errors: a statement's error names the column, not the statement psycopg's
    own text quotes; a failed connection names neither host nor password."""
    tenant = make_tenant().name
    query = sql.SQL("SELECT no_such_column FROM {}.tag_data").format(sql.Identifier(tenant))
    with pytest.raises(psycopg.Error) as raised:
        admin_conn.execute(query)
    assert "LINE 1" in str(raised.value)
    assert describe_tenant_error(raised.value) == (
        'UndefinedColumn: column "no_such_column" does not exist'
    )

    with pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect("postgresql://reader:s3cret@127.0.0.1:1/plant", connect_timeout=2)
    described = describe_tenant_error(raised.value)
    assert described == "OperationalError: the connection to the source database failed"

    with pytest.raises(psycopg.DataError) as raised:
        admin_conn.execute("SELECT '-infinity'::timestamptz").fetchone()
    assert describe_tenant_error(raised.value).startswith("DataError: timestamp too small")

    long = describe_tenant_error(UnknownTenant("x" * 1000))
    assert len(long) < 320 and long.endswith("…")


def test_summary_of_failures_names_a_few_tenants_and_counts_the_rest():
    failures = {f"t{n}": "UnknownTenant: gone" for n in range(7)}
    assert summarise_failures({"t0": "UnknownTenant: gone"}) == (
        "1 tenant failed: t0 (UnknownTenant: gone)"
    )
    summary = summarise_failures(failures)
    assert summary.startswith("7 tenants failed: t0 (UnknownTenant: gone); t1")
    assert summary.endswith("t4 (UnknownTenant: gone); and 2 more")
