"""Racing writers on one span, as threads with engines of their own and as two processes (two
servers in front of one state database): every acknowledged update is in the history exactly
once, revisions are contiguous, and each change starts from the one before (no lost update)."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from tagflow.annotations import AnnotationStore
from tagflow.annotations.state_database import create_state_engine
from tagflow.errors import Conflict
from tests.annotations.conftest import computed_span

SPAN = 424242


def race(
    url: str, tenant: str, writer: str, updates: int, start: Any = None
) -> tuple[list[tuple[int, str]], int]:
    """Make `updates` changes to SPAN as `writer` on an engine of its own (after `start`, a
    barrier, is passed), starting again from the current record after every Conflict; the
    (revision, note) of each acknowledged change, and how many were refused as stale."""
    engine = create_state_engine(url)
    store = AnnotationStore(engine)
    store.get(tenant, SPAN)  # connected and migrated before the race starts
    acknowledged, refused = [], 0
    revision = 0
    if start is not None:
        start.wait()
    try:
        for number in range(updates):
            note = f"{writer}-{number}"
            while True:
                try:
                    record = store.update(
                        tenant,
                        SPAN,
                        revision=revision,
                        by=writer,
                        computed=computed_span(),
                        note=note,
                    )
                    break
                except Conflict as stale:
                    refused += 1
                    revision = stale.current.revision
            acknowledged.append((record.revision, note))
            revision = record.revision
    finally:
        engine.dispose()
    return acknowledged, refused


def _check_no_lost_update(store: AnnotationStore, tenant: str, acknowledged) -> None:
    history = store.history(tenant, SPAN)
    assert [c.revision for c in history] == list(range(1, len(history) + 1))
    assert sorted((c.revision, c.after["note"]) for c in history) == sorted(acknowledged)
    assert len({note for _, note in acknowledged}) == len(acknowledged)
    assert history[0].before["note"] == ""
    assert all(history[i].after == history[i + 1].before for i in range(len(history) - 1))
    assert store.get(tenant, SPAN).revision == len(history)


def test_racing_threads_on_one_span_lose_no_update(state_url, store, tenant):
    store.migrate()
    results: dict[str, tuple[list, int]] = {}
    writers = [f"w{i}" for i in range(6)]
    start = threading.Barrier(len(writers))

    def run(writer: str) -> None:
        results[writer] = race(state_url, tenant, writer, 15, start)

    threads = [threading.Thread(target=run, args=(w,)) for w in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert set(results) == set(writers)
    acknowledged = [item for writer in writers for item in results[writer][0]]
    assert len(acknowledged) == 6 * 15
    assert sum(refused for _, refused in results.values()) > 0  # they did race
    _check_no_lost_update(store, tenant, acknowledged)


def test_two_processes_on_one_state_database_lose_no_update(state_url, store, tenant):
    store.migrate()
    spawn = multiprocessing.get_context("spawn")
    with spawn.Manager() as manager, ProcessPoolExecutor(2, mp_context=spawn) as servers:
        start = manager.Barrier(2)
        runs = [servers.submit(race, state_url, tenant, f"server{i}", 40, start) for i in range(2)]
        results = [run.result(timeout=180) for run in runs]
    acknowledged = [item for changes, _ in results for item in changes]
    assert len(acknowledged) == 80
    assert sum(refused for _, refused in results) > 0  # they did race
    _check_no_lost_update(store, tenant, acknowledged)
