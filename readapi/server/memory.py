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
that never pauses it trims at least every TRIM_MAX_WAIT_S.

Between trims the service keeps what it frees (keep_freed_memory): by default glibc unmaps a
freed block of more than a few MiB at once and cuts a heap whose free top passes twice that,
so every large answer faulted its pages in again (10 tags x 1m x 30 days, 3.8 MB of Arrow:
about 9,000 page faults and 20 ms a call on a 2-core VM)."""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

TRIM_QUIET_S = 0.5
TRIM_MAX_WAIT_S = 5.0
# mallopt's parameters, and the values the service sets: blocks up to glibc's largest mmap
# threshold come from the heap, and a heap keeps up to KEEP_FREE_BYTES of free top for the
# next answer (the trims give it back).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_ABOVE_BYTES = 32 << 20
KEEP_FREE_BYTES = 256 << 20
# glibc's own settings, which an operator's environment may give: theirs are kept.
_MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")


def _libc_function(name: str) -> Any:
    """A function of glibc, or None where the C library has none (musl, macOS). Looked up
    among the symbols the process has loaded (libc's among them): ctypes.util.find_library
    runs ldconfig or a compiler to find the library's file."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's malloc_trim(0), or None where the C library has none."""
    trim = _libc_function("malloc_trim")
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


def keep_freed_memory() -> bool:
    """Have glibc keep freed memory for reuse until the next trim (see above); whether it took
    the settings. Process-wide: for the service's own process only."""
    if any(name in os.environ for name in _MALLOC_ENV):
        return False
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_ABOVE_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, KEEP_FREE_BYTES)
    )


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
