"""Producing an iterator's next items on a background thread while the caller works."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """Yield `items` in order, computing up to `depth` of them ahead on a thread.

    Overlaps I/O (a database read) with the caller's computation; an exception in the
    producer is raised in the caller at the item where it happened. Closing the returned
    generator early stops the producer after its current item."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if not _put(slots, (item, None), stop):
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the consumer as is
            _put(slots, (_DONE, error), stop)
            return
        _put(slots, (_DONE, None), stop)

    worker = threading.Thread(target=produce, name="tagflow-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        worker.join()


def _put(slots: queue.Queue, entry: tuple, stop: threading.Event) -> bool:
    """Put `entry` unless the consumer has gone; False if it has."""
    while not stop.is_set():
        try:
            slots.put(entry, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False
