"""The read-ahead thread: items in order, errors raised where they are consumed, the thread and
its source stopped by the time the block is left, and an interrupt never waiting on a producer
that hangs."""

import threading
import time
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


def test_an_interrupt_leaves_at_once_while_the_producer_hangs():
    # A source that stopped answering: only a statement timeout (15 minutes) would end the read.
    answer, left = threading.Event(), threading.Event()

    def hanging() -> Iterator[int]:
        yield 0
        answer.wait()
        yield 1

    def consume() -> None:
        try:
            with read_ahead(hanging(), 1, "test-hang") as items:
                next(items)
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            left.set()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    consumer.join(timeout=30)  # a bound only a hang reaches
    hung = not left.is_set()
    answer.set()  # the producer sees it was told to stop, and ends
    assert not hung, "the interrupt waited for the hanging producer"
    for _ in range(600):  # the producer puts its last item and its end, neither consumed
        if not running("test-hang"):
            break
        time.sleep(0.05)
    assert not running("test-hang")


def test_a_producer_ending_after_the_consumer_left_does_not_block_on_a_full_queue():
    # The producer fills the one slot with its last item, which nobody takes, then ends: its
    # end must not wait for a slot, nor the consumer, leaving, for it.
    last, queued, left = threading.Event(), threading.Event(), threading.Event()

    def items() -> Iterator[int]:
        yield 0
        last.wait()
        yield 1
        queued.set()  # asked for the item after 1: 1 is in the slot

    def consume() -> None:
        with read_ahead(items(), 1, "test-end") as got:
            assert next(got) == 0
            last.set()
            queued.wait()
        left.set()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    consumer.join(timeout=30)  # a bound only a hang reaches
    assert left.is_set(), "leaving waited for a producer blocked on the full queue"
    assert not running("test-end")
