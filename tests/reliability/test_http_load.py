"""The read service under load: `tagflow serve` in its own process on a loopback port, 32
concurrent clients for 20 s (TAGFLOW_FULL_RELIABILITY=1: 120 s) sending a mix of every read
(JSON and Arrow, stored days, exact roll-ups and computed widths, source fallback for a day
not materialised). No request fails, the server's resident memory grows less than 10 %
between the end of a warm-up and the end of the run, and the latency percentiles are printed.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
import pytest

from tagflow.demo.synthetic_plant import generate_plant
from tagflow.readapi.server.keys import KeyStore
from tests.conftest import (
    drop_tenant,
    free_port,
    rss_bytes,
    unique_tenant_name,
    wait_until_serving,
)
from tests.reliability.trials import trials
from tests.stores import materialise_from_source

CLIENTS = 32
LOAD_S = trials(20, 120)
WARM_UP_S = 5
MAX_REQUESTS_PER_CLIENT = 5000  # bounds the run even if requests were instant
MAX_RSS_GROWTH = 0.10
DAY1 = date(2026, 3, 1)
STORED = {"start": "2026-03-01T00:00:00Z", "end": "2026-03-03T00:00:00Z"}
EDGES = {"start": "2026-03-01T05:00:00.5Z", "end": "2026-03-02T19:00:00Z"}
FALLBACK = {"start": "2026-03-03T00:00:00Z", "end": "2026-03-04T00:00:00Z"}  # source only


@dataclass(frozen=True)
class Server:
    url: str
    key: str
    pid: int
    tags: list[str]
    log: Path


@pytest.fixture(scope="module")
def server(pg_url: str, admin_conn: psycopg.Connection, tmp_path_factory) -> Iterator[Server]:
    """`tagflow serve` over a store with two of a tenant's three days (the third comes from
    the source), in a subprocess whose memory is its own."""
    tenant = unique_tenant_name("load")
    generate_plant(pg_url, [tenant], tags=36, days=3, start=DAY1, seed=17, rows_per_tag_day=40)
    folder = tmp_path_factory.mktemp("load")
    materialise_from_source(pg_url, folder / "store", tenant, [DAY1, date(2026, 3, 2)])
    key, _ = KeyStore(folder / "keys.json").add(tenant)
    port = free_port()
    log = folder / "server.log"
    command = [
        sys.executable,
        "-m",
        "tagflow.cli",
        "serve",
        f"--store={folder / 'store'}",
        f"--port={port}",
        f"--keys-file={folder / 'keys.json'}",
        f"--source-url={pg_url}",
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(process, url, log)
        headers = {"Authorization": f"Bearer {key}"}
        tags = [t["tag_name"] for t in httpx.get(f"{url}/v1/tags", headers=headers).json()]
        yield Server(url, key, process.pid, tags, log)
    finally:
        process.terminate()
        process.wait(timeout=30)
        drop_tenant(admin_conn, tenant)


def request_mix(tags: list[str]) -> list[tuple[str, str, dict]]:
    """(method, path, keyword arguments of httpx) of every kind of read, weighted towards the
    cheap stored reads a dashboard makes; one in twelve asks the source."""
    a, b = tags[3], tags[11]
    two = {"tag": [a, b]}
    return [
        ("GET", "/v1/tags", {"params": STORED}),
        ("GET", f"/v1/spans/{quote(a, safe='')}", {"params": {**STORED, "limit": "20"}}),
        ("GET", "/v1/metrics/data", {"params": {**STORED, **two}}),
        ("GET", "/v1/metrics/samples", {"params": {**STORED, **two, "bucket_width": "1h"}}),
        ("GET", "/v1/metrics/samples", {"params": {**EDGES, **two, "bucket_width": "7m13s"}}),
        ("GET", "/v1/metrics/samples", {"params": {**STORED, "bucket_width": "1d"}}),
        ("GET", "/v1/metrics/derivative", {"params": {**STORED, **two, "bucket_width": "15m"}}),
        ("GET", "/v1/metrics/counter_rate", {"params": {**STORED, **two, "bucket_width": "1h"}}),
        (
            "POST",
            "/v1/metrics/samples",
            {"json": {**STORED, "tag": [a, b], "bucket_width": "30m", "format": "arrow"}},
        ),
        ("GET", "/v1/tags", {"params": {**STORED, "format": "arrow"}}),
        ("GET", "/v1/spans/" + quote(b, safe=""), {"params": EDGES}),
        ("GET", "/v1/metrics/samples", {"params": {**FALLBACK, **two, "bucket_width": "1h"}}),
    ]


@dataclass
class Tally:
    latencies: list[float]
    failures: list[str]
    rss: list[int]


def run_clients(server: Server, seconds: float) -> Tally:
    """CLIENTS threads, each with its own connection, sending the mix round-robin (each
    starting at its own offset) until `seconds` have passed; the server's RSS is sampled
    every second meanwhile."""
    mix = request_mix(server.tags)
    tally = Tally([], [], [])
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(number: int) -> None:
        latencies, failures = [], []
        headers = {"Authorization": f"Bearer {server.key}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
            for sent in range(MAX_REQUESTS_PER_CLIENT):
                if time.monotonic() >= stop_at:
                    break
                method, path, arguments = mix[(number + sent) % len(mix)]
                began = time.perf_counter()
                try:
                    answer = http.request(method, path, **arguments)
                    if answer.status_code != 200:
                        failures.append(f"{path}: {answer.status_code} {answer.text[:200]}")
                except httpx.HTTPError as error:
                    failures.append(f"{path}: {error!r}")
                latencies.append(time.perf_counter() - began)
        with lock:
            tally.latencies += latencies
            tally.failures += failures

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    while time.monotonic() < stop_at:
        tally.rss.append(rss_bytes(server.pid))
        time.sleep(1)
    for thread in threads:
        thread.join(seconds + 120)
        assert not thread.is_alive(), "a client hung"
    return tally


def percentile_ms(latencies: list[float], q: int) -> float:
    return statistics.quantiles(latencies, n=100, method="inclusive")[q - 1] * 1000


def test_32_clients_for_20_s_get_every_answer_and_memory_stays_flat(server, capsys):
    warm = run_clients(server, WARM_UP_S)
    assert warm.failures == [], warm.failures[:5]
    rss_warm = rss_bytes(server.pid)
    tally = run_clients(server, LOAD_S)
    rss_end = rss_bytes(server.pid)
    growth = (rss_end - rss_warm) / rss_warm
    with capsys.disabled():
        print(
            f"\nHTTP load: {CLIENTS} clients × {LOAD_S} s, {len(tally.latencies)} requests "
            f"({len(tally.latencies) / LOAD_S:.0f}/s), failures {len(tally.failures)}; latency "
            f"p50 {percentile_ms(tally.latencies, 50):.1f} ms, p99 "
            f"{percentile_ms(tally.latencies, 99):.1f} ms, max {max(tally.latencies) * 1000:.0f} "
            f"ms; server RSS {rss_warm / 2**20:.1f} MiB after warm-up, {rss_end / 2**20:.1f} "
            f"MiB at the end ({growth:+.1%}); every 5 s: "
            + ", ".join(f"{rss / 2**20:.0f}" for rss in tally.rss[::5])
        )
    assert tally.failures == [], tally.failures[:5]
    assert len(tally.latencies) > CLIENTS  # every client got answers
    assert growth < MAX_RSS_GROWTH
    assert "Traceback" not in server.log.read_text()
