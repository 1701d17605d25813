"""Wall time of the stages of a run, added up by name (the day step reports them as metadata,
the benchmarks as the per-stage split)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

# Seconds by stage name.
Seconds = dict[str, float]


@contextmanager
def timed(seconds: Seconds | None, name: str) -> Iterator[None]:
    """Adds the wall time of the block to `seconds[name]` (nothing when `seconds` is None)."""
    began = time.perf_counter()
    try:
        yield
    finally:
        if seconds is not None:
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - began


def added(*parts: Seconds) -> Seconds:
    """The seconds of every part, stage by stage."""
    total: Seconds = {}
    for part in parts:
        for name, value in part.items():
            total[name] = total.get(name, 0.0) + value
    return total
