"""The connection to the source is cut in the middle of a read-API source fallback. A TCP proxy
on 127.0.0.1 stands between tagflow and the test's PostgreSQL and, once armed, cuts each
connection (a new one, or one tagflow's pool already holds) after some kilobytes from the server:
mid-way through the day's rows. Closing both
sockets gives SourceUnavailable at once; a black hole (both sockets open, nothing forwarded)
gives SourceUnavailable when the read's deadline (Client timeout_s, the service's
source_timeout_s) shuts the socket, instead of waiting forever. Both transports, then the
fallback works again once the proxy forwards."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import conninfo

from tagflow.demo.synthetic_plant import generate_plant
from tagflow.errors import SourceUnavailable
from tagflow.readapi import Client
from tagflow.readapi.server.app import create_app
from tagflow.readapi.server.keys import KeyStore
from tagflow.source.connection import libpq_url
from tests.conftest import drop_tenant, unique_tenant_name
from tests.readapi.conftest import BackgroundServer

DAY1 = date(2026, 3, 1)
DAY = (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))
# The handshake and the tenant check take about 1 KiB from the server, a day's rows of this
# plant about 100 KiB: a cut after 16 KiB falls inside the rows' COPY.
CUT_AFTER = 16 * 1024
DEADLINE_S = 3
NO_HANG_S = 30


class CuttingProxy:
    """Forwards TCP connections on 127.0.0.1 to a PostgreSQL server (a Unix socket path or a
    (host, port)). While armed, each connection is cut once it has carried `cut_after` bytes
    from the server since the arming (or since it was opened, if later): 'close' closes both
    sockets, 'blackhole' keeps both open and forwards nothing more (what the server sends is
    drained and dropped). `connections` counts the connections accepted: tagflow's sessions."""

    def __init__(self, upstream: str | tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed: tuple[str, int] | None = None
        self._arming = 0  # which arming _armed is, so a pump counts bytes from it on
        self._sockets: list[socket.socket] = []
        self.cuts = 0
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, mode: str, cut_after: int) -> None:
        with self._lock:
            self._armed = (mode, cut_after)
            self._arming += 1

    def disarm(self) -> None:
        with self._lock:
            self._armed = None

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _dial(self) -> socket.socket:
        if isinstance(self._upstream, str):
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.connect(self._upstream)
            return server
        return socket.create_connection(self._upstream)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            server = self._dial()
            with self._lock:
                self._sockets += [client, server]
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        carried, arming = 0, None
        try:
            while data := source.recv(65536):
                with self._lock:
                    armed = self._armed if from_server else None
                    if armed is not None and arming != self._arming:
                        arming, carried = self._arming, 0
                if armed is not None and carried + len(data) > armed[1]:
                    sink.sendall(data[: armed[1] - carried])
                    with self._lock:
                        self.cuts += 1
                    if armed[0] == "blackhole":
                        while source.recv(65536):
                            pass
                    break
                sink.sendall(data)
                carried += len(data)
        except OSError:
            pass  # the other side went away: end this connection too
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def upstream_of(pg_url: str) -> str | tuple[str, int]:
    params = conninfo.conninfo_to_dict(libpq_url(pg_url))
    host, port = str(params.get("host") or "/tmp"), int(params.get("port") or 5432)
    return f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)


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
    proxy_url = conninfo.make_conninfo(libpq_url(pg_url), host="127.0.0.1", port=proxy.port)
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
