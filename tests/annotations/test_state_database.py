"""The state database itself: created when missing, migrated once even by processes that start
together, refused when a newer tagflow migrated it, and its faults (stopped, a write cut off
mid-transaction) one-line StateUnavailable errors that leave nothing half-written."""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta

import psycopg
import pytest
import sqlalchemy as sa

from tagflow.annotations import AnnotationStore
from tagflow.annotations.state_database import (
    create_state_engine,
    database_on_server,
    state_url,
)
from tagflow.annotations.tables import SCHEMA_VERSION
from tagflow.errors import InvalidArgument, StateSchemaTooNew, StateUnavailable
from tagflow.settings import Settings
from tagflow.source.connection import libpq_url
from tagflow.source.embedded import embedded_server_url, stop_embedded_server
from tests.annotations.conftest import T0, computed_span

TABLES = {"tagflow_schema_version", "span_annotations", "span_annotation_history"}


def _tables(url: str) -> set[str]:
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {name for (name,) in rows}


def _migrate(url: str) -> int:
    engine = create_state_engine(url)
    try:
        store = AnnotationStore(engine)
        store.migrate()
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT version FROM tagflow_schema_version")).scalar()
    finally:
        engine.dispose()


def test_migrating_an_empty_database_creates_the_tables_once(fresh_state_url):
    url = fresh_state_url()
    assert _tables(url) == set()
    assert _migrate(url) == SCHEMA_VERSION
    assert _migrate(url) == SCHEMA_VERSION
    assert _tables(url) == TABLES
    with psycopg.connect(libpq_url(url)) as conn:
        assert conn.execute("SELECT count(*) FROM tagflow_schema_version").fetchone() == (1,)


def test_processes_and_threads_migrating_at_once_all_succeed(fresh_state_url):
    url = fresh_state_url()
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=spawn) as pool:
        processes = [pool.submit(_migrate, url) for _ in range(2)]
        threads = []
        failures: list[BaseException] = []

        def run() -> None:
            try:
                _migrate(url)
            except BaseException as failure:  # noqa: BLE001 - reported below
                failures.append(failure)

        for _ in range(3):
            threads.append(threading.Thread(target=run))
            threads[-1].start()
        assert [p.result(timeout=120) for p in processes] == [SCHEMA_VERSION] * 2
        for thread in threads:
            thread.join(timeout=60)
    assert failures == []
    assert _tables(url) == TABLES


def test_a_database_migrated_by_a_newer_tagflow_is_refused(fresh_state_url):
    url = fresh_state_url()
    _migrate(url)
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute("UPDATE tagflow_schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    store = AnnotationStore(create_state_engine(url))
    with pytest.raises(StateSchemaTooNew, match="upgrade tagflow") as refused:
        store.update("acme", 1, revision=0, by="a", computed=computed_span(), note="x")
    assert "\n" not in str(refused.value)
    with psycopg.connect(libpq_url(url)) as conn:
        assert conn.execute("SELECT count(*) FROM span_annotations").fetchone() == (0,)
        # Never downgraded.
        version = conn.execute("SELECT version FROM tagflow_schema_version").fetchone()
        assert version == (SCHEMA_VERSION + 1,)


def test_the_state_database_is_created_once_even_when_asked_twice_at_once(pg_url, admin_conn):
    name = "state_created_twice"
    admin_conn.execute(f"DROP DATABASE IF EXISTS {name}")
    urls = []
    threads = [
        threading.Thread(target=lambda: urls.append(database_on_server(pg_url, name)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert len(urls) == 3 and len(set(urls)) == 1
        assert "dbname=state_created_twice" in urls[0]
        assert _migrate(urls[0]) == SCHEMA_VERSION
    finally:
        admin_conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_a_configured_url_is_used_as_given():
    url = "postgresql://u:p@db.example/state"
    assert state_url(url, source_url="postgresql://u:p@db.example/plant") == url


@pytest.mark.parametrize(
    "source", ["postgresql://reader:x@db.example:5432/plant", "host=db.example dbname=plant"]
)
def test_the_source_database_is_never_the_state_database(source):
    with pytest.raises(InvalidArgument, match="source database") as refused:
        state_url("postgresql+psycopg://u:secret@db.example/plant", source_url=source)
    assert "secret" not in str(refused.value) and "db.example" not in str(refused.value)


def test_the_setting_is_read_from_its_variable_and_kept_out_of_reprs():
    settings = Settings.from_env({"TAGFLOW_STATE_URL": "postgresql://u:secret@h/s"})
    assert settings.state_url == "postgresql://u:secret@h/s"
    assert "secret" not in repr(settings)
    assert Settings.from_env({}).state_url is None


@pytest.mark.parametrize(
    "url, reason",
    [
        ("postgresql://u:p@[::1/x", "could not be parsed"),
        ("postgresql://nobody:secret@127.0.0.1:1/state", "could not be reached"),
    ],
)
def test_a_bad_url_is_a_one_line_error_without_the_url(url, reason):
    with pytest.raises(StateUnavailable, match=reason) as refused:
        AnnotationStore(create_state_engine(url)).get("acme", 1)
    text = str(refused.value)
    assert "\n" not in text and "secret" not in text and "127.0.0.1" not in text


def test_a_missing_database_says_so_without_its_name(pg_url):
    params = psycopg.conninfo.conninfo_to_dict(libpq_url(pg_url))
    url = psycopg.conninfo.make_conninfo("", **{**params, "dbname": "no_such_state_db"})
    with pytest.raises(StateUnavailable, match="does not exist") as refused:
        AnnotationStore(create_state_engine(url)).get("acme", 1)
    assert "no_such_state_db" not in str(refused.value)


def test_a_write_cut_off_mid_transaction_leaves_nothing(state_url, store, tenant):
    store.update(tenant, 9, revision=0, by="a", computed=computed_span(), note="kept")
    outcome: list[BaseException] = []
    with psycopg.connect(libpq_url(state_url)) as holder:
        # Hold the span's row so the write blocks inside its transaction, then end its session.
        holder.execute(
            "SELECT 1 FROM span_annotations WHERE tenant = %s AND span_id = 9 FOR UPDATE",
            (tenant,),
        )

        def write() -> None:
            try:
                store.update(tenant, 9, revision=1, by="b", note="cut off", hidden=True)
            except BaseException as failure:  # noqa: BLE001 - checked below
                outcome.append(failure)

        writer = threading.Thread(target=write)
        writer.start()
        with psycopg.connect(libpq_url(state_url), autocommit=True) as admin:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                waiting = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                ).fetchall()
                if waiting:
                    break
                time.sleep(0.05)
            assert waiting, "the write never blocked on the held row"
            admin.execute("SELECT pg_terminate_backend(%s)", waiting[0])
        writer.join(timeout=30)
        holder.rollback()
    [failure] = outcome
    assert isinstance(failure, StateUnavailable) and "\n" not in str(failure)
    record = store.get(tenant, 9)
    assert (record.revision, record.note, record.hidden) == (1, "kept", False)
    assert len(store.history(tenant, 9)) == 1
    # The pool replaced the ended session: the next write goes through.
    assert store.update(tenant, 9, revision=1, by="b", note="again").revision == 2


def test_a_stopped_state_database_is_a_one_line_error_and_nothing_is_lost(server_dir):
    data_dir = server_dir
    server = embedded_server_url(data_dir)
    try:
        url = database_on_server(server, "tagflow_state")
        store = AnnotationStore(create_state_engine(url))
        store.update("acme", 7, revision=0, by="a", computed=computed_span(), note="before")
        stop_embedded_server(data_dir)
        started = time.monotonic()
        for attempt in (
            lambda: store.update("acme", 7, revision=1, by="a", note="while down"),
            lambda: store.create("acme", "t", T0, T0 + timedelta(hours=1), by="a"),
            lambda: store.for_spans("acme", [7]),
            lambda: store.history("acme", 7),
        ):
            with pytest.raises(StateUnavailable) as refused:
                attempt()
            text = str(refused.value)
            assert "\n" not in text and str(data_dir) not in text and "postgres" not in text
        assert time.monotonic() - started < 30
        assert embedded_server_url(data_dir) == server
        assert store.get("acme", 7).note == "before"
        assert store.records("acme").num_rows == 1 and len(store.history("acme", 7)) == 1
        assert store.update("acme", 7, revision=1, by="a", note="after").revision == 2
    finally:
        stop_embedded_server(data_dir)
