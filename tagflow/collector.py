"""Pausing Python's cyclic garbage collector while thousands of acyclic records are built.

Each record is a tracked object that outlives the collections its own allocations set off, so
one large answer moves thousands of objects into the oldest generation and sets off a full
collection of the whole heap every few calls: measured on get_spans of 8,800 spans, p95 45–48
ms with the collector running against 18–20 ms with it paused (p50 16–17.5 against 14–15).
The records hold no reference cycles, so pausing loses nothing; the collector resumes once the
last builder in the process is done (builders may run on several threads at once)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Pauses:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holders = 0
        self.resume = False  # whether the collector ran when the first holder paused it


_PAUSES = _Pauses()


@contextmanager
def collector_paused() -> Iterator[None]:
    """The block runs with the cyclic collector paused; it runs again after the last such
    block ends, unless it was already disabled before the first began."""
    with _PAUSES.lock:
        if _PAUSES.holders == 0:
            _PAUSES.resume = gc.isenabled()
            gc.disable()
        _PAUSES.holders += 1
    try:
        yield
    finally:
        with _PAUSES.lock:
            _PAUSES.holders -= 1
            if _PAUSES.holders == 0 and _PAUSES.resume:
                gc.enable()


@contextmanager
def long_lived() -> Iterator[None]:
    """The block builds what lives as long as the process (a command's imports: Dagster and the
    rest, over a million objects): it runs with the collector paused, whose full passes over a
    growing heap found nearly nothing to free, and what it built is then left out of every
    later collection (gc.freeze), which would otherwise scan it again and again during a run.
    For a process's own start only: objects frozen are never collected."""
    with collector_paused():
        yield
    gc.freeze()
