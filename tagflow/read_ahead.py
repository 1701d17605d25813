"""Producing the next items on a background thread while the caller consumes this one: the
decoding and encoding that pyarrow does in C++ release the GIL, so the two overlap on two
cores."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


@contextmanager
def read_ahead(items: Iterator[T], depth: int, name: str) -> Iterator[Iterator[T]]:
    """`items`, produced by a thread called `name` at most `depth` ahead of the consumer. The
    thread has stopped when the block is left, so whatever it reads from can be closed right
    after; unless an interrupt (Ctrl-C, a terminated run) leaves it: the process is stopping,
    and the thread may be blocked in a read that only a timeout ends (a source that hangs), so
    it is told to stop but not waited for."""
    slots: queue.Queue = queue.Queue(depth)
    done = object()
    stop = threading.Event()

    def offer(item: object) -> bool:
        """Put `item` in a slot once one is free; False if told to stop first (the consumer
        has gone: a full queue would block for good)."""
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(done)
        except BaseException as error:  # handed to the consumer, raised there
            offer(error)
        finally:
            # A generator stopped early releases what it holds (a source connection) here,
            # on the thread that ran it, not whenever it is collected.
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def consume() -> Iterator[T]:
        while (item := slots.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    wait = True
    try:
        yield consume()
    except BaseException as leaving:
        wait = isinstance(leaving, Exception)  # not an interrupt
        raise
    finally:
        stop.set()
        if wait:
            thread.join()
