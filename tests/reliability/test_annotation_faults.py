"""Span annotation writes under faults (DESIGN §9, docs/guarantees.md), with `tagflow serve` in
processes of its own and a real state database:

- kill -9 of the server during a stream of writes, at a random moment, then a restart: every
  acknowledged write is in the state database at its revision and in the history; the write in
  flight is there whole or not at all (its answer was lost: the revision tells); nothing else;
- two servers in front of one state database, writers racing on one span through both: no lost
  update (each acknowledged update exactly once in the history, revisions contiguous);
- the state database stopped: writes are a one-line 503 and write nothing; once it is back,
  writes work again without restarting the service.

A bounded number of kill trials always; more with TAGFLOW_FULL_RELIABILITY=1."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tagflow.annotations import AnnotationStore
from tagflow.annotations.state_database import database_on_server, dispose_state_engines
from tagflow.demo.synthetic_plant import generate_plant
from tagflow.readapi import Client, Span
from tagflow.readapi.server.app import create_app
from tagflow.readapi.server.keys import KeyStore
from tagflow.source.embedded import embedded_server_url, stop_embedded_server
from tests.conftest import (
    drop_tenant,
    free_port,
    state_database,
    unique_tenant_name,
    wait_until_serving,
)
from tests.readapi.conftest import BackgroundServer
from tests.reliability.trials import SEED, trials
from tests.stores import materialise_from_source

DAY1 = date(2026, 3, 1)
RANGE = ("2026-03-01T00:00:00+00:00", "2026-03-02T00:00:00+00:00")
KILL_TRIALS = trials(3, 25)
RACE_WRITES = trials(15, 60)  # per writer; 8 writers over two servers


@dataclass(frozen=True)
class Setup:
    root: Path
    keys: Path
    key: str
    tenant: str
    state_url: str
    pg_url: str
    # Four for the kill trials, one for the race, one for the stopped database.
    spans: list[Span]


@pytest.fixture(scope="module")
def setup(pg_url: str, admin_conn: psycopg.Connection, tmp_path_factory) -> Iterator[Setup]:
    tenant = unique_tenant_name("notes")
    generate_plant(pg_url, [tenant], tags=13, days=1, start=DAY1, seed=23, rows_per_tag_day=30)
    folder = tmp_path_factory.mktemp("annotation-faults")
    materialise_from_source(pg_url, folder / "store", tenant, [DAY1])
    key, _ = KeyStore(folder / "keys.json").add(tenant, write=True, label="writer")
    with Client(store=folder / "store", tenant=tenant) as client:
        tag = client.get_tags()[0].name
        spans = [s for s in client.get_spans(tag, RANGE) if s.raw_end_at is not None][:6]
    assert len(spans) == 6
    try:
        with state_database(pg_url, admin_conn) as state_url:
            store, keys = folder / "store", folder / "keys.json"
            yield Setup(store, keys, key, tenant, state_url, pg_url, spans)
    finally:
        drop_tenant(admin_conn, tenant)


class Served:
    """`tagflow serve` in a process of its own over the setup's store and state database."""

    def __init__(self, setup: Setup, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "tagflow.cli",
            "serve",
            f"--store={setup.root}",
            f"--port={self.port}",
            f"--keys-file={setup.keys}",
            f"--source-url={setup.pg_url}",
        ]
        env = {**os.environ, "TAGFLOW_STATE_URL": setup.state_url}
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, env=env
            )
        wait_until_serving(self.process, self.url, log)

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def patch(http: httpx.Client, span: Span, revision: int, token: str) -> httpx.Response:
    """A write of two fields at once (labels and note), so a partial write would show."""
    body: dict[str, Any] = {"revision": revision, "labels": {"token": token}, "note": token}
    if revision == 0:
        body.update(tag_name=span.tag_name, raw_begin_at=span.raw_begin_at.isoformat())
    return http.patch(f"/v1/annotations/spans/{span.id}", json=body)


@dataclass
class Stream:
    """What one writer saw: acknowledged writes (span id, revision, token) and the write whose
    answer never came."""

    acknowledged: list[tuple[int, int, str]] = field(default_factory=list)
    in_flight: tuple[int, str] | None = None


def write_until_cut(
    url: str, key: str, spans: list[Span], revisions: dict[int, int], writing: threading.Event
) -> Stream:
    """Write until the server is gone; `writing` is set once the first write is acknowledged
    (a fresh server's first write reads its span from the datasets: slow on a busy machine)."""
    stream = Stream()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        for n in range(100_000):
            span = spans[n % len(spans)]
            token = uuid.uuid4().hex
            try:
                answer = patch(http, span, revisions[span.id], token)
            except httpx.TransportError:
                stream.in_flight = (span.id, token)
                return stream
            assert answer.status_code == 200, answer.text
            revision = answer.json()["metadata"]["revision"]
            assert revision == revisions[span.id] + 1
            revisions[span.id] = revision
            stream.acknowledged.append((span.id, revision, token))
            writing.set()
    return stream


def test_kill_9_during_writes_keeps_every_acknowledged_write_and_no_partial_one(
    setup: Setup, tmp_path: Path
):
    store = AnnotationStore.at(setup.state_url)
    chooser = random.Random(SEED)
    revisions = {
        span.id: (record.revision if (record := store.get(setup.tenant, span.id)) else 0)
        for span in setup.spans[:4]
    }
    acknowledged: list[tuple[int, int, str]] = []
    in_flight: list[tuple[int, str]] = []
    for _ in range(KILL_TRIALS):
        server = Served(setup, tmp_path / "server.log")
        result: list[Stream] = []
        writing = threading.Event()
        writer = threading.Thread(
            target=lambda url, out, started: out.append(
                write_until_cut(url, setup.key, setup.spans[:4], revisions, started)
            ),
            args=(server.url, result, writing),
        )
        writer.start()
        assert writing.wait(timeout=60), "no write was acknowledged"
        time.sleep(chooser.uniform(0.05, 1.2))
        server.kill()
        writer.join(timeout=60)
        (stream,) = result
        assert stream.acknowledged, "no write was acknowledged before the kill"
        acknowledged += stream.acknowledged
        if stream.in_flight is not None:
            in_flight.append(stream.in_flight)
            span_id, token = stream.in_flight
            record = store.get(setup.tenant, span_id)
            # Whole or absent: committed (one revision on, both fields) or nothing at all.
            if record is not None and record.revision != revisions[span_id]:
                assert record.revision == revisions[span_id] + 1
                assert (record.note, record.labels) == (token, {"token": token})
                revisions[span_id] = record.revision

    written = {}
    for span in setup.spans[:4]:
        history = store.history(setup.tenant, span.id)
        assert [change.revision for change in history] == list(range(1, len(history) + 1))
        for change in history:
            assert change.after["note"] == change.after["labels"]["token"]  # never partial
            assert change.by == "writer"
            written[(span.id, change.revision)] = change.after["note"]
        assert store.get(setup.tenant, span.id).revision == len(history)
    for span_id, revision, token in acknowledged:
        assert written[(span_id, revision)] == token
    # Every change is an acknowledged write or a write cut off: nothing else was written.
    cut = {token for _, token in in_flight}
    assert set(written.values()) <= {t for *_, t in acknowledged} | cut
    print(
        f"\n{KILL_TRIALS} kills: {len(acknowledged)} acknowledged writes all kept; "
        f"{len(in_flight)} cut off, {len(cut & set(written.values()))} of them committed"
    )


def test_two_servers_racing_on_one_span_lose_no_update(setup: Setup, tmp_path: Path):
    span = setup.spans[4]
    servers = [Served(setup, tmp_path / f"server{n}.log") for n in range(2)]
    acknowledged: list[tuple[int, str]] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def writer(number: int) -> None:
        url = servers[number % 2].url
        headers = {"Authorization": f"Bearer {setup.key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            revision = 0
            start.wait()
            for n in range(RACE_WRITES):
                token = f"w{number}-{n}"
                while True:
                    answer = patch(http, span, revision, token)
                    if answer.status_code == 409:
                        revision = answer.json()["current"]["metadata"]["revision"]
                        continue
                    assert answer.status_code == 200, answer.text
                    revision = answer.json()["metadata"]["revision"]
                    with lock:
                        acknowledged.append((revision, token))
                    break

    try:
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    finally:
        for server in servers:
            server.stop()
    history = AnnotationStore.at(setup.state_url).history(setup.tenant, span.id)
    assert len(acknowledged) == 8 * RACE_WRITES
    assert [c.revision for c in history] == list(range(1, len(history) + 1))
    assert len(history) == len(acknowledged)
    assert sorted(acknowledged) == [(c.revision, c.after["note"]) for c in history]


def test_state_database_stopped_is_a_one_line_503_and_writes_nothing(
    setup: Setup, server_dir: Path
):
    data_dir = server_dir
    state_url = database_on_server(embedded_server_url(data_dir), "tagflow_state")
    app = create_app(setup.root, setup.keys, setup.pg_url, state_url=state_url)
    span = setup.spans[5]
    try:
        with BackgroundServer(app) as server:
            headers = {"Authorization": f"Bearer {setup.key}"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
                assert patch(http, span, 0, "before").status_code == 200
                stop_embedded_server(data_dir)
                for token in ("down-1", "down-2"):
                    answer = patch(http, span, 1, token)
                    assert answer.status_code == 503, answer.text
                    body = answer.json()
                    assert body["error"] == "state_unavailable"
                    assert "\n" not in body["message"] and str(data_dir) not in body["message"]
                embedded_server_url(data_dir)  # started again, same socket
                assert patch(http, span, 1, "after").status_code == 200
        history = AnnotationStore.at(state_url).history(setup.tenant, span.id)
        assert [c.after["note"] for c in history] == ["before", "after"]
    finally:
        dispose_state_engines()
        stop_embedded_server(data_dir)
