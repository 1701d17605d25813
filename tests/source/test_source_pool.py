"""The source is read through one pooled SQLAlchemy engine per URL: a tenant-day's
materialisation opens one pooled session (plus its ADBC day stream), later runs and reads reuse
it, a session the server terminated while it sat idle is replaced without an error, and the
registry of engines stays bounded. Sessions are counted by a TCP proxy every one of them passes
through (tests/reliability/test_source_connection_drops.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime

import dagster as dg
import psycopg
import pytest
from psycopg import conninfo

from tagflow.cli.runs import materialize_days
from tagflow.errors import SourceUnavailable
from tagflow.readapi import Client
from tagflow.settings import Settings
from tagflow.source import engines
from tagflow.source.connection import libpq_url, source_errors
from tagflow.source.engines import source_engine, source_session
from tests.reliability.test_source_connection_drops import CuttingProxy, upstream_of
from tests.source.test_schema_drift import DAY1, TAG, fill

DAY2_RANGE = (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))


@pytest.fixture
def tenant(make_tenant, admin_conn: psycopg.Connection):
    created = make_tenant()
    fill(admin_conn, created.name)
    return created


@pytest.fixture
def proxy(pg_url: str) -> Iterator[CuttingProxy]:
    counting = CuttingProxy(upstream_of(pg_url))
    yield counting
    counting.close()


def through(proxy: CuttingProxy, pg_url: str, **params: str) -> str:
    """`pg_url` through the proxy (a URL of its own, so a pool of its own), as another role."""
    return conninfo.make_conninfo(libpq_url(pg_url), host="127.0.0.1", port=proxy.port, **params)


def role_url(pg_url: str, tenant) -> str:
    return conninfo.make_conninfo(libpq_url(pg_url), user=tenant.name, password=tenant.api_key)


def terminate_sessions_of(admin_conn: psycopg.Connection, role: str) -> int:
    """End every session of `role` from the server's side, as a restart or an operator does."""
    (ended,) = admin_conn.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = %s",
        (role,),
    ).fetchone()
    return ended


def test_a_day_materialisation_opens_one_pooled_session_and_later_runs_reuse_it(
    tenant, proxy, pg_url, tmp_path
):
    url = through(proxy, pg_url)
    instance = dg.DagsterInstance.ephemeral()
    settings = Settings(source_url=url, store=str(tmp_path))
    opened = []
    for day in (DAY1, date(2026, 3, 2), date(2026, 3, 3)):
        before = proxy.connections
        runs = materialize_days(tenant.name, day, date(2026, 3, day.day + 1), instance, settings)
        assert [r.success for r in runs] == [True]
        opened.append(proxy.connections - before)
    # Before the pool: 8 sessions per 1-day materialisation (a new one for each query, and
    # the ADBC stream's two). Now the first run opens the pooled session, and every run the
    # ADBC day stream's two (one loads the server's type catalogue, one streams the rows).
    assert opened == [3, 2, 2]


def test_read_client_source_reads_share_one_pooled_session(tenant, proxy, pg_url, tmp_path):
    url = through(proxy, pg_url)
    with Client(store=tmp_path, tenant=tenant.name, source_url=url, cache_ttl_s=0) as client:
        for _ in range(3):
            assert client.get_spans(TAG, DAY2_RANGE)
            assert client.get_metric_data(None, DAY2_RANGE).shape[0] > 0
    assert proxy.connections == 1


def test_sessions_terminated_by_the_server_while_idle_are_replaced_without_error(
    tenant, admin_conn, pg_url, tmp_path
):
    url = role_url(pg_url, tenant)  # the tenant's own role: its sessions are ours alone
    instance = dg.DagsterInstance.ephemeral()
    settings = Settings(source_url=url, store=str(tmp_path / "store"))
    runs = materialize_days(tenant.name, DAY1, date(2026, 3, 2), instance, settings)
    assert [r.success for r in runs] == [True]
    with source_session(url) as conn:
        first_pid = conn.info.backend_pid
    assert terminate_sessions_of(admin_conn, tenant.name) >= 1  # the pool's idle session

    runs = materialize_days(tenant.name, date(2026, 3, 2), date(2026, 3, 3), instance, settings)
    assert [r.success for r in runs] == [True]
    terminate_sessions_of(admin_conn, tenant.name)
    with Client(store=tmp_path / "empty", tenant=tenant.name, source_url=url) as client:
        assert client.get_spans(TAG, DAY2_RANGE)
    with source_session(url) as conn:
        assert conn.info.backend_pid != first_pid


def test_a_session_broken_while_checked_out_is_not_pooled_again(tenant, admin_conn, pg_url):
    url = role_url(pg_url, tenant)
    with pytest.raises(SourceUnavailable), source_session(url) as conn:
        broken_pid = conn.info.backend_pid
        admin_conn.execute("SELECT pg_terminate_backend(%s)", (broken_pid,))
        with source_errors("reading"):
            conn.execute("SELECT 1")
    with source_session(url) as conn:
        assert conn.info.backend_pid != broken_pid
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_one_engine_per_url_and_a_bounded_number_of_them(monkeypatch):
    monkeypatch.setattr(engines, "MAX_ENGINES", 2)
    urls = [f"postgresql://u@127.0.0.1:{port}/db" for port in (1, 2, 3)]
    first = source_engine(urls[0])
    assert source_engine(urls[0]) is first
    source_engine(urls[1])
    source_engine(urls[2])  # evicts the least recently used: urls[0]
    assert urls[0] not in engines._engines and len(engines._engines) <= 2
    assert source_engine(urls[0]) is not first


def test_errors_and_engines_never_show_the_url_or_its_password():
    url = "postgresql://someone:s3cret-pw@127.0.0.1:1/plant"
    with pytest.raises(SourceUnavailable) as refused, source_session(url):
        pass
    assert "s3cret-pw" not in str(refused.value) and "127.0.0.1" not in str(refused.value)
    engine = source_engine(url)
    assert "s3cret-pw" not in repr(engine) and "s3cret-pw" not in str(engine.url)
    with pytest.raises(SourceUnavailable, match="could not be parsed"):
        source_engine("postgresql://someone:s3cret-pw@[::1/plant")


def test_a_session_of_an_evicted_engine_is_closed_when_given_back(
    monkeypatch, tenant, admin_conn, pg_url
):
    monkeypatch.setattr(engines, "MAX_ENGINES", 1)
    url = role_url(pg_url, tenant)
    with source_session(url) as conn:
        pid = conn.info.backend_pid
        with source_session(pg_url):  # a second URL: the first one's engine is evicted
            pass
    deadline = time.monotonic() + 10
    while admin_conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
        assert time.monotonic() < deadline, "the evicted engine's session stayed open"
        time.sleep(0.05)
