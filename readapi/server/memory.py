"""Giving an answer's memory back to the system once it has been sent.

The service's routes run on worker threads, and glibc's malloc keeps what a thread frees in
that thread's arena: after an answer built from a million cells the service stayed hundreds of
MiB above its baseline for good, where issue 17 wants it back within 10 %. Arrow's pool is the
system allocator in `tagflow serve`, so one `malloc_trim` returns Arrow's, numpy's and pandas'
freed memory from every arena at once. A trim costs milliseconds on a large heap, so it runs
on its own thread, never on a request's path, once answers have stopped for TRIM_QUIET_S: a
stream of requests reuses what a trim would give back, and trimming between them (every half
second, as this did) took a tenth of a core and made the next answers fault their pages in
again (30-day reads over HTTP, back to back: p50 +1 ms, p90 +1 to +14 ms). Under a stream
that never pauses it trims at least every TRIM_MAX_WAIT_S."""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable, Generator, Iterator

TRIM_QUIET_S = 0.5
TRIM_MAX_WAIT_S = 5.0


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's malloc_trim(0), or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class MemoryReleaser:
    """Trims the heap on a daemon thread some time after answers were sent."""

    def __init__(self) -> None:
        self._trim = _malloc_trim()
        self._sent = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def after(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """`chunks`, then a trim requested: the last reference to the answer goes with the
        exhausted (or closed) encoder, before the trim runs."""
        try:
            yield from chunks
        finally:
            if isinstance(chunks, Generator):  # the encoders are generators; close() ends one
                chunks.close()
            del chunks
            self.request()

    def request(self) -> None:
        if self._trim is None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="tagflow-memory-release", daemon=True
                )
                self._thread.start()
        self._sent.set()

    def _run(self) -> None:
        assert self._trim is not None
        while True:
            self._sent.wait()
            first = time.monotonic()
            while True:
                self._sent.clear()
                time.sleep(TRIM_QUIET_S)
                if not self._sent.is_set() or time.monotonic() - first >= TRIM_MAX_WAIT_S:
                    break
            self._trim()


releaser = MemoryReleaser()
