"""Wall time of the stages of a run, added up by name (the day step reports them as metadata,
the benchmarks as the per-stage split)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def timed(seconds: Counter[str] | None, name: str) -> Iterator[None]:
    """Adds the wall time of the block to `seconds[name]` (nothing when `seconds` is None)."""
    began = time.perf_counter()
    try:
        yield
    finally:
        if seconds is not None:
            elapsed = time.perf_counter() - began
            # typeshed types a Counter's counts as int; a Counter adds float seconds all the same
            seconds[name] += elapsed  # type: ignore[assignment]  # float seconds, see above
