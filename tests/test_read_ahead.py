"""The read-ahead thread: items in order, errors raised where they are consumed, and the thread
and its source stopped by the time the block is left, however it is left."""

import threading
from collections.abc import Iterator

import pytest

from tagflow.read_ahead import read_ahead


class Source:
    """A generator of numbers that records who ran it and whether it was closed."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count, self.fail_at = count, fail_at
        self.closed = False
        self.produced = 0
        self.threads: set[str] = set()

    def items(self) -> Iterator[int]:
        try:
            for k in range(self.count):
                self.threads.add(threading.current_thread().name)
                if k == self.fail_at:
                    raise ValueError(f"source failed at {k}")
                self.produced += 1
                yield k
        finally:
            self.closed = True


def running(name: str) -> bool:
    return any(thread.name == name for thread in threading.enumerate())


def test_every_item_arrives_in_order_from_the_named_thread():
    source = Source(50)
    with read_ahead(source.items(), 2, "test-ahead") as items:
        assert list(items) == list(range(50))
    assert source.threads == {"test-ahead"}
    assert not running("test-ahead")


def test_a_producers_error_is_raised_to_the_consumer_after_the_items_before_it():
    source = Source(10, fail_at=4)
    seen = []
    with pytest.raises(ValueError, match="source failed at 4"):
        with read_ahead(source.items(), 2, "test-ahead") as items:
            seen.extend(items)
    assert seen == [0, 1, 2, 3]
    assert source.closed and not running("test-ahead")


def test_leaving_early_stops_the_thread_and_closes_the_source():
    source = Source(1_000_000)
    with read_ahead(source.items(), 1, "test-ahead") as items:
        assert next(items) == 0
    assert source.closed and not running("test-ahead")
    # The one consumed, the one the queue holds, and at most one waiting to be put.
    assert source.produced <= 3


def test_a_consumers_error_stops_the_thread_before_it_propagates():
    source = Source(1_000_000)
    with pytest.raises(RuntimeError, match="consumer failed"):
        with read_ahead(source.items(), 1, "test-ahead") as items:
            for k in items:
                if k == 3:
                    raise RuntimeError("consumer failed")
    assert source.closed and not running("test-ahead")
