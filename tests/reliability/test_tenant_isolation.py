"""One tenant never stops the others (issue 17, item 3): in the tenant discovery sensor, the
late-data sensor and the daily schedule, a tenant that fails is logged (a warning naming the
tenant and the error's class and message, never a URL, password or SQL) and reported for that
tenant, and the tick carries on: every other tenant gets exactly what it would get alone.

Tenants are broken for real in the test PostgreSQL, never mocked: a dropped schema, a renamed
table, a dropped column, a revoked grant, a row whose time the driver cannot convert."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import psycopg
import pytest
from dagster._core.definitions.schedule_definition import ScheduleExecutionData
from dagster._core.definitions.sensor_definition import SensorExecutionData
from psycopg import conninfo, sql

from tagflow.assets.partitions import TENANT_DIMENSION, tenant_day_key
from tagflow.assets.resources import SourceDatabase
from tagflow.demo.synthetic_plant import MIN_TAGS, generate_plant
from tagflow.pipelines.definitions import build_definitions
from tagflow.pipelines.schedules import build_daily_schedule
from tagflow.pipelines.sensors import (
    DATA_VERSION_TAG,
    build_late_data_sensor,
    build_tenant_discovery_sensor,
)
from tagflow.settings import Settings
from tagflow.source import extract
from tagflow.source.connection import connect, libpq_url
from tagflow.source.fingerprints import day_fingerprint
from tests.conftest import drop_tenant, unique_tenant_name

START = date(2026, 3, 1)
DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]
# Noon on 4 March: 3 March is the last complete day for both sensors.
NOW = datetime(2026, 3, 4, 12, tzinfo=UTC)


@dataclass(frozen=True)
class Plant:
    """Three healthy tenants, the one a test breaks, and the role the sensors read them as."""

    healthy: list[str]
    broken: str
    role: str
    password: str
    url: str

    @property
    def tenants(self) -> list[str]:
        return sorted([*self.healthy, self.broken])


@pytest.fixture
def plant(pg_url: str, admin_conn: psycopg.Connection) -> Iterator[Plant]:
    """Four generated tenants (3 days from START) and a login role with a password, like a
    deployment's discovery role, that may read exactly these four: the sensors connect as it,
    so other tests' tenants on a shared server never enter these ticks."""
    names = sorted(unique_tenant_name("iso") for _ in range(4))
    role, password = unique_tenant_name("reader"), secrets.token_hex(16)
    try:
        generate_plant(
            pg_url, names, tags=MIN_TAGS, days=3, start=START, seed=3, rows_per_tag_day=8
        )
        admin_conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        for name in names:
            grant = {"s": sql.Identifier(name), "r": sql.Identifier(role)}
            admin_conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {s} TO {r}").format(**grant))
            admin_conn.execute(
                sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r}").format(**grant)
            )
        params = conninfo.conninfo_to_dict(libpq_url(pg_url))
        url = conninfo.make_conninfo("", **{**params, "user": role, "password": password})
        # Which one breaks is arbitrary; the second in name order has healthy tenants both
        # before and after it.
        yield Plant([names[0], *names[2:]], names[1], role, password, url)
    finally:
        for name in names:
            drop_tenant(admin_conn, name)
        exists = admin_conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        if exists.fetchone():
            admin_conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin_conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def run(admin_conn: psycopg.Connection, statement: str, tenant: str, role: str = "") -> None:
    """Run an admin statement with {t} the tenant's schema and {r} the sensors' role."""
    admin_conn.execute(
        sql.SQL(statement).format(t=sql.Identifier(tenant), r=sql.Identifier(role or tenant))
    )


def keys(requests: list[dg.RunRequest]) -> list[tuple[str, str]]:
    """(run_key, partition_key) of each run request, in order."""
    return [(r.run_key, str(r.partition_key)) for r in requests]


def backfill(tenants: list[str]) -> list[tuple[str, str]]:
    """What discovery requests for new tenants whose history starts on START, with a floor of
    START and room for every day in one tick: each tenant's three days, tenants in name
    order; the run key is "tenant|day", the partition key "day|tenant"."""
    return [(f"{t}|{day}", f"{day}|{t}") for t in sorted(tenants) for day in DAYS]


def assert_reported(log: str, plant: Plant, error_class: str) -> list[str]:
    """The tick's warnings about the broken tenant: at least one, naming the error's class;
    nothing in the log names the healthy tenants as failing or shows the sensors' URL, their
    password, or SQL. Returns the broken tenant's warning lines."""
    lines = [line for line in log.splitlines() if plant.broken in line]
    assert lines, log
    assert any("WARNING" in line and error_class in line for line in lines), lines
    for secret in (plant.password, plant.url, "postgresql://", "password="):
        assert secret not in log
    for sql_text in ("SELECT", "FROM ", "LINE ", "tag_value_changed_at AS"):
        assert sql_text not in "\n".join(lines), lines
    for tenant in plant.healthy:
        assert not any("WARNING" in line and tenant in line for line in log.splitlines())
    return lines


# ---------------------------------------------------------------- first row time


def first_finite_row(admin_conn: psycopg.Connection, plant: Plant) -> datetime:
    query = sql.SQL(
        "SELECT min(t) FROM (SELECT tag_value_changed_at AS t FROM {s}.tag_data UNION ALL"
        " SELECT tag_value_changed_at FROM {s}.tag_data_str) rows WHERE isfinite(t)"
    ).format(s=sql.Identifier(plant.broken))
    return admin_conn.execute(query).fetchone()[0]


def test_first_row_time_skips_rows_at_infinity(plant, admin_conn):
    """DESIGN §2: rows at ±infinity are in no day, so they start no history; a tenant whose
    only rows are there has no first row, like one without rows."""
    run(admin_conn, "INSERT INTO {t}.tag_data VALUES (1, '-infinity', 1.0)", plant.broken)
    run(admin_conn, "INSERT INTO {t}.tag_data_str VALUES (1, '-infinity', 'x')", plant.broken)
    with connect(plant.url) as conn:
        assert extract.first_row_time(conn, plant.broken) == first_finite_row(admin_conn, plant)

        run(
            admin_conn,
            "DELETE FROM {t}.tag_data WHERE isfinite(tag_value_changed_at)",
            plant.broken,
        )
        run(
            admin_conn,
            "DELETE FROM {t}.tag_data_str WHERE isfinite(tag_value_changed_at)",
            plant.broken,
        )
        run(admin_conn, "INSERT INTO {t}.tag_data_str VALUES (1, 'infinity', 'x')", plant.broken)
        assert extract.first_row_time(conn, plant.broken) is None


# ---------------------------------------------------------------- tenant discovery


def discovery_tick(
    plant: Plant, instance: dg.DagsterInstance, cursor: str | None
) -> dg.SensorResult:
    """One discovery tick as the daemon runs it (partition additions applied to `instance`),
    the source read as the plant's role, backfilling from START with room for every day."""
    settings = Settings(backfill_floor=START, backfill_days_per_tick=31)
    sensor = build_tenant_discovery_sensor(settings, clock=lambda: NOW)
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"source": SourceDatabase(url=plant.url)}
    ) as context:
        result = sensor(context)
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def registered(result: dg.SensorResult) -> list[str]:
    return [key for r in result.dynamic_partitions_requests for key in r.partition_keys]


def test_discovery_registers_every_tenant_when_a_new_one_has_rows_at_infinity(
    plant, admin_conn, capfd
):
    """Issue 17: one row at −infinity in a new tenant made the discovery tick raise (psycopg
    cannot convert the time), so no tenant at all was registered. Such rows start no history:
    the tenant is registered and backfilled from its first finite row, like the others."""
    run(admin_conn, "INSERT INTO {t}.tag_data VALUES (2, '-infinity', 0.5)", plant.broken)
    run(admin_conn, "INSERT INTO {t}.tag_data_str VALUES (5, 'infinity', 'late')", plant.broken)
    with dg.instance_for_test() as instance:
        result = discovery_tick(plant, instance, None)
    assert registered(result) == plant.tenants
    assert keys(result.run_requests) == backfill(plant.tenants)
    assert json.loads(result.cursor) == {"backfill": {}, "missing": []}
    assert "WARNING" not in capfd.readouterr().err


# A new tenant whose first row time cannot be read, and how to repair it.
UNREADABLE_FIRST_ROW = {
    # psycopg converts no time before year 1 (PostgreSQL stores them).
    "row_before_year_1": (
        "DataError",
        ["INSERT INTO {t}.tag_data VALUES (1, '0044-03-15 12:00 BC', 1.0)"],
        ["DELETE FROM {t}.tag_data WHERE tag_value_changed_at < '0001-01-01'"],
    ),
    # A schema that drifted: the string table's time column is text (refused by reflection
    # before it is read, naming the column).
    "time_column_turned_to_text": (
        "SchemaDrift",
        [
            "DROP VIEW {t}.metrics",
            "ALTER TABLE {t}.tag_data_str ALTER COLUMN tag_value_changed_at TYPE text",
        ],
        [
            "ALTER TABLE {t}.tag_data_str ALTER COLUMN tag_value_changed_at TYPE timestamptz"
            " USING tag_value_changed_at::timestamptz"
        ],
    ),
}


@pytest.mark.parametrize("breakage", sorted(UNREADABLE_FIRST_ROW))
def test_discovery_reports_a_tenant_it_cannot_read_and_registers_the_others(
    plant, admin_conn, capfd, breakage
):
    """The broken tenant is not registered (its backfill could not start where its history
    does), is reported in the log and the cursor, and is tried again on every tick: once
    repaired, it is registered and backfilled like any new tenant."""
    error_class, break_it, repair = UNREADABLE_FIRST_ROW[breakage]
    for statement in break_it:
        run(admin_conn, statement, plant.broken)
    capfd.readouterr()
    with dg.instance_for_test() as instance:
        one = discovery_tick(plant, instance, None)
        assert registered(one) == plant.healthy
        assert keys(one.run_requests) == backfill(plant.healthy)
        cursor = json.loads(one.cursor)
        assert cursor["backfill"] == {} and cursor["missing"] == []
        assert list(cursor["failed"]) == [plant.broken]
        assert cursor["failed"][plant.broken].startswith(f"{error_class}: ")
        assert_reported(capfd.readouterr().err, plant, error_class)

        # Still broken: reported again, nothing else happens.
        two = discovery_tick(plant, instance, one.cursor)
        assert registered(two) == [] and two.run_requests == []
        assert plant.broken in two.skip_reason.skip_message
        assert error_class in two.skip_reason.skip_message
        assert json.loads(two.cursor)["failed"] == cursor["failed"]
        assert_reported(capfd.readouterr().err, plant, error_class)

        for statement in repair:
            run(admin_conn, statement, plant.broken)
        three = discovery_tick(plant, instance, two.cursor)
        assert registered(three) == [plant.broken]
        assert keys(three.run_requests) == backfill([plant.broken])
        assert json.loads(three.cursor) == {"backfill": {}, "missing": []}
        assert set(instance.get_dynamic_partitions(TENANT_DIMENSION)) == set(plant.tenants)


# ---------------------------------------------------------------- late data

# How the broken tenant fails its fingerprint, and the error class reported.
LATE_DATA_BREAKS: dict[str, tuple[str, Callable[[psycopg.Connection, Plant], None]]] = {
    "schema_dropped": ("UnknownTenant", lambda conn, p: drop_tenant(conn, p.broken)),
    "table_renamed": (
        "UnknownTenant",
        lambda conn, p: run(conn, "ALTER TABLE {t}.tag_data_str RENAME TO old_str", p.broken),
    ),
    "select_revoked": (
        "UnknownTenant",
        lambda conn, p: run(conn, "REVOKE SELECT ON {t}.tag_data FROM {r}", p.broken, p.role),
    ),
    # The driver's own text of this error quotes the statement; the report must not.
    "column_dropped": (
        "UndefinedColumn",
        lambda conn, p: run(
            conn, "ALTER TABLE {t}.tag_data DROP COLUMN tag_value CASCADE", p.broken
        ),
    ),
    # Reading the tenant ends the sensor's session: the tenants after it need a new one.
    "session_killed": ("SourceUnavailable", lambda conn, p: end_session_on_read(conn, p)),
}


def end_session_on_read(admin_conn: psycopg.Connection, plant: Plant) -> None:
    """Put a view in place of the broken tenant's tag_data that terminates the session reading
    it (through a function that runs with the admin's rights), as a server that drops a
    connection mid-query does."""
    for statement in [
        "ALTER TABLE {t}.tag_data RENAME TO tag_data_rows",
        "CREATE FUNCTION {t}.end_session() RETURNS boolean SECURITY DEFINER LANGUAGE sql"
        " AS 'SELECT pg_terminate_backend(pg_backend_pid())'",
        "CREATE VIEW {t}.tag_data AS SELECT * FROM {t}.tag_data_rows WHERE {t}.end_session()",
        "GRANT SELECT ON {t}.tag_data TO {r}",
    ]:
        run(admin_conn, statement, plant.broken, plant.role)


# The value of every late row: no generated row has it.
LATE = 4242.25


def record_materialisations(instance: dg.DagsterInstance, plant: Plant) -> None:
    """Record each tenant-day of the plant as materialised from the source as it is now: the
    data version a `transitions` run records is the day's source fingerprint
    (tests/pipelines/test_late_data.py runs the assets and checks that), and it is all the
    late-data sensor reads of a materialisation."""
    instance.add_dynamic_partitions(TENANT_DIMENSION, plant.tenants)
    with connect(plant.url) as conn:
        for tenant in plant.tenants:
            for day in DAYS:
                start = datetime.fromisoformat(day).replace(tzinfo=UTC)
                version = day_fingerprint(conn, tenant, start, start + timedelta(days=1)).version
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(
                        asset_key="transitions",
                        partition=str(tenant_day_key(tenant, day)),
                        tags={DATA_VERSION_TAG: version},
                    )
                )


def late_data_tick(plant: Plant, instance: dg.DagsterInstance) -> SensorExecutionData:
    """One late-data tick evaluated as the daemon does (Dagster resolves the partition keys
    against the code location), the source read as the plant's role."""
    settings = Settings(source_url=plant.url, late_data_lookback_days=7)
    sensor = build_late_data_sensor(settings, clock=lambda: NOW)
    # Closed here, not whenever it is collected: a context with an instance ref leaves
    # Dagster's current state storage pointing at a closed instance until it is closed.
    with dg.build_sensor_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        resources={"source": SourceDatabase(url=plant.url)},
        repository_def=build_definitions(settings).get_repository_def(),
    ) as context:
        return sensor.evaluate_tick(context)


@pytest.mark.parametrize("breakage", sorted(LATE_DATA_BREAKS))
def test_late_data_checks_every_other_tenant_when_one_is_broken(plant, admin_conn, capfd, breakage):
    """Issue 17: a tenant whose schema disappeared made the late_data tick raise UnknownTenant,
    so the late rows of every other tenant were missed for as long as the lookback lasts. Each
    tenant gets a late row on a different day; the healthy tenants' requests once one tenant
    is broken are exactly those of the tick before it broke, less the broken tenant's."""
    error_class, break_it = LATE_DATA_BREAKS[breakage]
    with dg.instance_for_test() as instance:
        record_materialisations(instance, plant)
        for index, tenant in enumerate(plant.tenants):
            late = datetime(2026, 3, 1 + index % 3, 12, 34, 56, 789, tzinfo=UTC)
            run(admin_conn, f"INSERT INTO {{t}}.tag_data VALUES (7, '{late}', {LATE})", tenant)

        before = late_data_tick(plant, instance)
        by_tenant = {
            t: [r for r in before.run_requests if r.partition_key.endswith(f"|{t}")]
            for t in plant.tenants
        }
        assert all(by_tenant.values()), "every tenant's late row is noticed"

        break_it(admin_conn, plant)
        capfd.readouterr()
        after = late_data_tick(plant, instance)
        expected = [r for t in plant.healthy for r in by_tenant[t]]
        assert sorted(keys(after.run_requests)) == sorted(keys(expected))
        assert_reported(capfd.readouterr().err, plant, error_class)

        # With nothing left to request, the skip reason names the broken tenant too.
        for tenant in plant.healthy:
            run(admin_conn, f"DELETE FROM {{t}}.tag_data WHERE tag_value = {LATE}", tenant)
        quiet = late_data_tick(plant, instance)
        assert quiet.run_requests == []
        assert plant.broken in quiet.skip_message and error_class in quiet.skip_message


# ---------------------------------------------------------------- daily schedule


def schedule_tick(
    schedule: dg.ScheduleDefinition,
    instance: dg.DagsterInstance,
    repository: dg.RepositoryDefinition,
) -> ScheduleExecutionData:
    """The 4 March tick, evaluated as the daemon does (keys resolved against the code location);
    the context is closed at once, for the reason late_data_tick gives."""
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2026, 3, 4, 0, 30, tzinfo=UTC),
        repository_def=repository,
    ) as context:
        return schedule.evaluate_tick(context)


@pytest.mark.parametrize(
    "bad_name",
    [
        # Splits into three parts in the "day|tenant" key: Dagster failed the whole tick.
        "plant|north",
        # Registered by hand: no tenant can have these names, so their runs could only fail.
        "Plant-North",
        "p" * 64,
    ],
)
def test_daily_schedule_requests_every_other_tenant_when_one_cannot_be_addressed(capfd, bad_name):
    """The schedule reads no source: a tenant fails it only by a registered name no run can
    address. That tenant is skipped and reported; the others get exactly their runs."""
    healthy = ["plant_a", "plant_b", "plant_c"]
    schedule = build_daily_schedule(Settings())
    repository = build_definitions(Settings(source_url="unused")).get_repository_def()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TENANT_DIMENSION, [*healthy, bad_name])
        capfd.readouterr()
        data = schedule_tick(schedule, instance, repository)
        assert [(r.run_key, str(r.partition_key)) for r in data.run_requests] == [
            (f"{t}|2026-03-03", f"2026-03-03|{t}") for t in healthy
        ]
        log = capfd.readouterr().err
        warnings = [line for line in log.splitlines() if "WARNING" in line]
        assert len(warnings) == 1 and "InvalidName" in warnings[0], log
        assert bad_name[:20] in warnings[0]

        # Only unaddressable tenants: the skip reason says which and why.
        instance.delete_dynamic_partition(TENANT_DIMENSION, "plant_a")
        instance.delete_dynamic_partition(TENANT_DIMENSION, "plant_b")
        instance.delete_dynamic_partition(TENANT_DIMENSION, "plant_c")
        data = schedule_tick(schedule, instance, repository)
        assert data.run_requests == []
        assert "InvalidName" in data.skip_message
