"""A tenant's three tables are checked by reflection against the DDL before it is read: a column
retyped or missing is a SchemaDrift naming the table and column and what was found, refused
before anything is written (materialisation) or answered (the read client's source fallback,
the HTTP service's 409 source_schema_drift); extra columns are fine; a passed check is
remembered for a while, so reads do not pay catalogue queries each time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import dagster as dg
import httpx
import psycopg
import pytest
from psycopg import sql

from tagflow.cli.runs import PartitionRun, materialize_days
from tagflow.errors import SchemaDrift, SourceDataError
from tagflow.io_managers import DatasetStore
from tagflow.readapi import Client
from tagflow.readapi.errors import wire_error
from tagflow.readapi.server.app import create_app
from tagflow.readapi.server.keys import KeyStore
from tagflow.schemas.registry import DATED
from tagflow.schemas.source_ddl import source_table_columns
from tagflow.settings import Settings
from tagflow.source import schema_drift
from tagflow.source.engines import source_session
from tagflow.source.schema_drift import schema_drifts
from tagflow.source.tenants import SOURCE_TABLES
from tests.conftest import CreatedTenant
from tests.readapi.conftest import BackgroundServer
from tests.reliability.test_database_faults import failures_of


def forget_checks() -> None:
    """Forget every passed schema check, as a fresh process would: the next session of each
    tenant checks its tables again."""
    with schema_drift._passed_lock:
        schema_drift._passed.clear()


DAY1, DAY2, DAY3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)
DAY2_RANGE = (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))
TAG = "plant/flow"

# How each tenant drifts ({t}: its schema), and what the refusal says ({t}: its name). The
# metrics view reads every column, so PostgreSQL refuses to retype one under it: it goes first.
DRIFTS: dict[str, tuple[list[str], str]] = {
    "tag_value_numeric": (
        [
            "DROP VIEW {t}.metrics",
            "ALTER TABLE {t}.tag_data ALTER COLUMN tag_value TYPE numeric",
        ],
        "{t}.tag_data.tag_value is numeric, expected double precision",
    ),
    "column_dropped": (
        ["ALTER TABLE {t}.tag_data_str DROP COLUMN tag_value CASCADE"],
        "{t}.tag_data_str.tag_value is missing (expected text)",
    ),
    "time_retyped": (
        [
            "DROP VIEW {t}.metrics",
            "ALTER TABLE {t}.tag_data ALTER COLUMN tag_value_changed_at"
            " TYPE timestamp without time zone",
        ],
        "{t}.tag_data.tag_value_changed_at is timestamp without time zone, "
        "expected timestamp with time zone",
    ),
}


def run(conn: psycopg.Connection, statement: str, tenant: str) -> None:
    conn.execute(sql.SQL(statement).format(t=sql.Identifier(tenant)))  # type: ignore[arg-type]


def fill(conn: psycopg.Connection, tenant: str) -> None:
    """One numeric tag with a row on each of three days, and a string tag."""
    run(conn, "INSERT INTO {t}.tag_names (id, normalized_name, birth_at) VALUES "
        f"(1, '{TAG}', '2026-02-01'), (2, 'plant/state', '2026-02-01')", tenant)  # fmt: skip
    run(conn, "INSERT INTO {t}.tag_data VALUES (1, '2026-03-01 06:00Z', 1.5),"
        " (1, '2026-03-02 06:00Z', 2.5), (1, '2026-03-03 06:00Z', 3.5)", tenant)  # fmt: skip
    run(conn, "INSERT INTO {t}.tag_data_str VALUES (2, '2026-03-01 07:00Z', 'on')", tenant)


@pytest.fixture
def tenant(make_tenant: Callable[[], CreatedTenant], admin_conn: psycopg.Connection) -> str:
    """A fresh tenant with a few rows; its schema not yet checked by anyone."""
    name = make_tenant().name
    fill(admin_conn, name)
    return name


def drift(admin_conn: psycopg.Connection, tenant: str, how: str) -> str:
    """Apply drift `how` to the tenant; the message the refusal must contain."""
    statements, message = DRIFTS[how]
    for statement in statements:
        run(admin_conn, statement, tenant)
    return message.format(t=tenant)


def settings(pg_url: str, store) -> Settings:
    return Settings(source_url=pg_url, store=str(store))


def test_the_expected_columns_come_from_the_ddl() -> None:
    columns = source_table_columns()
    assert set(columns) == set(SOURCE_TABLES)
    assert columns["tag_names"] == {
        "id": "integer",  # serial
        "normalized_name": "text",
        "birth_at": "timestamp with time zone",
        "death_at": "timestamp with time zone",
    }
    assert columns["tag_data"]["tag_value"] == "double precision"
    assert columns["tag_data_str"]["tag_value_changed_at"] == "timestamp with time zone"


def test_drifts_name_every_missing_or_retyped_column_and_ignore_extra_ones() -> None:
    found = {table: dict(columns) for table, columns in source_table_columns().items()}
    found["tag_data"]["tag_value"] = "real"
    del found["tag_names"]["death_at"]
    found["tag_data_str"]["note"] = "text"
    assert schema_drifts("acme", found) == [
        "acme.tag_names.death_at is missing (expected timestamp with time zone)",
        "acme.tag_data.tag_value is real, expected double precision",
    ]
    assert schema_drifts("acme", source_table_columns()) == []


def test_a_healthy_tenant_passes_materialises_and_reads(tenant, pg_url, tmp_path) -> None:
    runs = materialize_days(
        tenant, DAY1, DAY3, dg.DagsterInstance.ephemeral(), settings(pg_url, tmp_path)
    )
    assert [r.success for r in runs] == [True, True]
    with Client(store=tmp_path, tenant=tenant, source_url=pg_url) as client:
        spans = client.get_spans(TAG, (datetime(2026, 3, 1, tzinfo=UTC), DAY2_RANGE[1]))
        assert {s.value for s in spans} == {1.5, 2.5}
        assert client.get_spans(TAG, (DAY2_RANGE[1], datetime(2026, 3, 4, tzinfo=UTC)))  # source


def test_extra_columns_are_fine(tenant, admin_conn, pg_url) -> None:
    run(admin_conn, "ALTER TABLE {t}.tag_data ADD COLUMN quality smallint", tenant)
    run(admin_conn, "ALTER TABLE {t}.tag_names ADD COLUMN unit text", tenant)
    with source_session(pg_url, tenant=tenant) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("how", sorted(DRIFTS))
def test_materialize_refuses_a_drifted_tenant_and_writes_nothing(
    tenant, admin_conn, pg_url, tmp_path, how
) -> None:
    message = drift(admin_conn, tenant, how)
    instance = dg.DagsterInstance.ephemeral()
    with pytest.raises(SchemaDrift) as refused:
        materialize_days(tenant, DAY1, DAY3, instance, settings(pg_url, tmp_path))
    assert message in str(refused.value)
    assert isinstance(refused.value, SourceDataError)  # the day step's no-retry class
    assert instance.get_runs() == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("how", sorted(DRIFTS))
def test_read_client_source_fallback_refuses_a_drifted_tenant(
    tenant, admin_conn, pg_url, tmp_path, how
) -> None:
    message = drift(admin_conn, tenant, how)
    with Client(store=tmp_path, tenant=tenant, source_url=pg_url) as client:
        with pytest.raises(SchemaDrift, match="expected") as refused:
            client.get_spans(TAG, DAY2_RANGE)
        assert message in str(refused.value)
        with pytest.raises(SchemaDrift):
            client.get_metric_data(None, DAY2_RANGE)


def test_http_service_answers_a_drifted_tenant_with_409_source_schema_drift(
    make_tenant, admin_conn, pg_url, tmp_path
) -> None:
    created = make_tenant()
    fill(admin_conn, created.name)
    message = drift(admin_conn, created.name, "tag_value_numeric")
    keys = KeyStore(tmp_path / "keys.json")
    key, _ = keys.add(created.name)
    with BackgroundServer(create_app(tmp_path / "store", tmp_path / "keys.json", pg_url)) as srv:
        answer = httpx.get(
            f"{srv.url}/v1/spans/{TAG}",
            params={"start": DAY2_RANGE[0].isoformat(), "end": DAY2_RANGE[1].isoformat()},
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        with Client(host=srv.url, tenant=created.name, api_key=key) as remote:
            with pytest.raises(SchemaDrift, match="tag_value is numeric"):
                remote.get_spans(TAG, DAY2_RANGE)
    assert answer.status_code == 409
    assert answer.json()["error"] == "source_schema_drift"
    assert message in answer.json()["message"]
    for leak in ("Traceback", "SELECT", pg_url, str(tmp_path)):
        assert leak not in answer.text
    assert wire_error(SchemaDrift("x")) == (409, "source_schema_drift")


def test_a_tenant_that_drifts_between_runs_fails_its_run_once_without_writing(
    tenant, admin_conn, pg_url, tmp_path
) -> None:
    """The day step checks too (here day 2's run, after day 1 passed): the run fails at once
    (a retry would read the same tables), and nothing of day 2 is published."""
    instance = dg.DagsterInstance.ephemeral()

    def drift_after_first_day(done: PartitionRun) -> None:
        if done.day == DAY1:
            drift(admin_conn, tenant, "column_dropped")
            forget_checks()  # as a fresh step process would: the day-1 pass is not reused

    runs = materialize_days(
        tenant,
        DAY1,
        DAY3,
        instance,
        settings(pg_url, tmp_path),
        on_partition_done=drift_after_first_day,
    )
    assert [r.success for r in runs] == [True, False]
    assert failures_of(instance, runs[1].run_id) == ["Failure"]  # one attempt, no retry
    failure = next(
        event.dagster_event.event_specific_data.error.message
        for event in instance.all_logs(runs[1].run_id)
        if event.dagster_event and event.dagster_event.event_type_value == "STEP_FAILURE"
    )
    assert f"{tenant}.tag_data_str.tag_value is missing" in failure
    store = DatasetStore(tmp_path)
    for dataset in DATED:
        assert store.materialised_days(dataset, tenant) == [DAY1], dataset


def test_a_passed_check_is_remembered_until_forgotten(tenant, admin_conn, pg_url) -> None:
    with source_session(pg_url, tenant=tenant):
        pass
    drift(admin_conn, tenant, "tag_value_numeric")
    with source_session(pg_url, tenant=tenant):  # within CHECK_TTL_S: no catalogue query
        pass
    forget_checks()
    with pytest.raises(SchemaDrift, match="tag_value is numeric"):
        with source_session(pg_url, tenant=tenant):
            pass
