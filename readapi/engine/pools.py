"""The read engine's thread pools, each made on first use and kept for the process: stored
files are read concurrently (Arrow decodes with the GIL released), so a read over days or
months takes about the time of its slowest few files instead of their sum."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor


class SharedPool:
    """A pool of `workers` threads named `name`-N, made when first asked for."""

    def __init__(self, workers: int, name: str) -> None:
        self._workers, self._name = workers, name
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def get(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix=self._name)
            return self._pool
