"""The connection to the source is cut in the middle of a read-API source fallback. A TCP proxy
on 127.0.0.1 stands between tagflow and the test's PostgreSQL and, once armed, cuts each
connection (a new one, or one tagflow's pool already holds) after some kilobytes from the server:
mid-way through the day's rows. Closing both
sockets gives SourceUnavailable at once; a black hole (both sockets open, nothing forwarded)
gives SourceUnavailable when the read's deadline (Client timeout_s, the service's
source_timeout_s) shuts the socket, instead of waiting forever. Both transports, then the
fallback works again once the proxy forwards."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from tagflow.demo.synthetic_plant import generate_plant
from tagflow.errors import SourceUnavailable
from tagflow.readapi import Client
from tagflow.readapi.server.app import create_app
from tagflow.readapi.server.keys import KeyStore
from tests.conftest import drop_tenant, unique_tenant_name
from tests.cutting_proxy import CuttingProxy, proxied_url, upstream_of
from tests.readapi.conftest import BackgroundServer

DAY1 = date(2026, 3, 1)
DAY = (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))
# The handshake and the tenant check take about 1 KiB from the server, a day's rows of this
# plant about 100 KiB: a cut after 16 KiB falls inside the rows' COPY.
CUT_AFTER = 16 * 1024
DEADLINE_S = 3
NO_HANG_S = 30


def finishes(call: Callable[[], object]) -> tuple[BaseException | None, float]:
    """(what `call` raised, seconds it took), run in a thread: a read that hangs fails the
    test after NO_HANG_S instead of blocking the suite."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as error:  # handed to the test thread
            raised.append(error)

    began = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(NO_HANG_S)
    assert not worker.is_alive(), f"the read hung for more than {NO_HANG_S} s"
    return (raised[0] if raised else None), time.monotonic() - began


@dataclass(frozen=True)
class Setup:
    proxy: CuttingProxy
    proxy_url: str
    store: Path
    keys_file: Path
    tenant: str
    key: str


@pytest.fixture(scope="module")
def setup(pg_url: str, admin_conn: psycopg.Connection, tmp_path_factory) -> Iterator[Setup]:
    """A tenant whose days are in the source only (the store is empty), and the proxy."""
    tenant = unique_tenant_name("drop")
    generate_plant(pg_url, [tenant], tags=16, days=2, start=DAY1, seed=3, rows_per_tag_day=400)
    folder = tmp_path_factory.mktemp("drops")
    key, _ = KeyStore(folder / "keys.json").add(tenant)
    proxy = CuttingProxy(upstream_of(pg_url))
    proxy_url = proxied_url(pg_url, proxy)
    yield Setup(proxy, proxy_url, folder / "store", folder / "keys.json", tenant, key)
    proxy.close()
    drop_tenant(admin_conn, tenant)


@pytest.fixture
def proxy(setup: Setup) -> Iterator[CuttingProxy]:
    setup.proxy.disarm()
    yield setup.proxy
    setup.proxy.disarm()


@pytest.mark.parametrize("mode", ["close", "blackhole"])
def test_store_client_fallback_cut_mid_query_fails_fast_and_recovers(setup, proxy, mode):
    client = Client(
        store=setup.store,
        tenant=setup.tenant,
        source_url=setup.proxy_url,
        timeout_s=DEADLINE_S,
        cache_ttl_s=600,
    )
    assert len(client.get_tags()) == 16  # through the proxy; the tag list is now cached
    cuts = proxy.cuts
    proxy.arm(mode, CUT_AFTER)
    failure, elapsed = finishes(lambda: client.get_metric_data(None, DAY))
    assert isinstance(failure, SourceUnavailable), failure
    assert proxy.cuts > cuts  # the proxy really cut the day's read
    if mode == "blackhole":
        assert f"did not answer within {DEADLINE_S} s" in str(failure)
        assert elapsed >= DEADLINE_S - 0.5
    else:
        assert "lost" in str(failure)
    assert setup.proxy_url not in str(failure)
    proxy.disarm()
    assert client.get_metric_data(None, DAY).shape[0] > 1000  # and it works again


@pytest.mark.parametrize("mode", ["close", "blackhole"])
def test_http_fallback_cut_mid_query_is_a_503_quickly(setup, proxy, mode):
    app = create_app(setup.store, setup.keys_file, setup.proxy_url, source_timeout_s=DEADLINE_S)
    params = {"start": DAY[0].isoformat(), "end": DAY[1].isoformat()}
    headers = {"Authorization": f"Bearer {setup.key}"}
    with (
        BackgroundServer(app) as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=120) as http,
    ):
        assert http.get("/v1/tags").status_code == 200  # warms the tag list
        proxy.arm(mode, CUT_AFTER)
        answers: list[httpx.Response] = []
        failure, _ = finishes(lambda: answers.append(http.get("/v1/metrics/data", params=params)))
        assert failure is None and len(answers) == 1
        answer = answers[0]
        assert (answer.status_code, answer.json()["error"]) == (503, "source_unavailable")
        for leak in ("Traceback", setup.proxy_url, str(setup.store)):
            assert leak not in answer.text
        proxy.disarm()
        assert http.get("/v1/metrics/data", params=params).status_code == 200
