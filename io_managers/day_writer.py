"""Write and audit every dataset of one tenant-day as its chunks are computed, on writer
threads, so that checking and compressing chunk k overlaps computing chunk k+1.

Chunks of a dataset are gathered until they hold WRITE_BATCH_ROWS rows (small datasets, such as the
daily samples, are then audited and written once a day instead of once a chunk), audited
against the dataset's pandera schema and its seams, and written to the dataset's staged file.
Nothing is published here: `finish` returns the staged partitions once every chunk passed and
the row accounting holds, each stamped with the day's publish id (day_publish), and any
failure discards them all.

Each dataset is written by one of WRITER_LANES threads, always the same one (its chunks reach
its file in order, so the bytes are those of a single writer). A dataset takes the lane with
the fewest rows so far when its first rows come: the 1-minute samples, most of a day's
rows, get a lane to themselves, the other datasets share the other.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tagflow.chunk_sizes import WRITE_BATCH_ROWS
from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.io_managers.day_publish import PUBLISH_KEY, publish_id
from tagflow.io_managers.partition_writer import PartitionWriter, StagedPartition
from tagflow.schemas.dataset_checks import DayAudit
from tagflow.schemas.registry import dataset as registered
from tagflow.timing import Seconds, timed

# Units of work waiting for each writer thread: bounds memory when checking lags computing.
_PENDING = 2
# Writer threads: on two cores a day's writing (encoding and audit, which release the GIL)
# took longer than its computing, one thread behind the other.
WRITER_LANES = max(1, min(2, os.cpu_count() or 1))


class DayWriter:
    """The staged partitions of one tenant-day's datasets, written as chunks come."""

    def __init__(
        self, store: DatasetStore, tenant: str, day: date, day_start: datetime, day_end: datetime
    ) -> None:
        self._store, self._tenant, self._day = store, tenant, day
        self._audit = DayAudit(day_start, day_end)
        self._writers: dict[str, PartitionWriter] = {}
        self._waiting: dict[str, list[pa.Table]] = {}
        self._waiting_rows: dict[str, int] = {}
        self._lanes = [
            _Lane(ThreadPoolExecutor(1, thread_name_prefix=f"tagflow-write-{k}"))
            for k in range(WRITER_LANES)
        ]
        self._lane_of: dict[str, _Lane] = {}
        self._observed: dict[str, _Observed] = {}

    @property
    def seconds(self) -> Seconds:
        """Seconds the writer threads spent auditing and writing (alongside the computing)."""
        total: Seconds = {}
        for lane in self._lanes:
            for name, value in lane.seconds.items():
                total[name] = total.get(name, 0.0) + value
        return total

    def add(self, tables: dict[str, pa.Table]) -> None:
        """The tables of one chunk, by dataset (chunks in tag-name order)."""
        for dataset, table in tables.items():
            self._waiting.setdefault(dataset, []).append(table)
            self._waiting_rows[dataset] = self._waiting_rows.get(dataset, 0) + table.num_rows
            if self._waiting_rows[dataset] >= WRITE_BATCH_ROWS:
                self._submit(dataset)

    def _submit(self, dataset: str) -> None:
        tables = self._waiting.pop(dataset, [])
        self._waiting_rows.pop(dataset, None)
        if dataset not in self._writers:
            self._writers[dataset] = self._store.stage(dataset, self._tenant, self._day)
            self._lane_of[dataset] = min(self._lanes, key=lambda lane: lane.rows)
        lane = self._lane_of[dataset]
        lane.rows += sum(table.num_rows for table in tables)
        lane.pending.append(lane.thread.submit(self._check_and_write, lane, dataset, tables))
        while len(lane.pending) > _PENDING:
            lane.pending.pop(0).result()  # raises the writer thread's failure here

    def _check_and_write(self, lane: _Lane, dataset: str, tables: list[pa.Table]) -> None:
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        with timed(lane.seconds, "audit_s"):
            self._audit.check(dataset, table)
        with timed(lane.seconds, "write_s"):
            self._writers[dataset].write(table)
        self._observed.setdefault(dataset, _Observed(registered(dataset).time_column)).add(table)

    def finish(
        self, datasets: list[str], counts: dict[str, int], streamed_rows: int
    ) -> dict[str, StagedPartition]:
        """Every dataset of `datasets` staged (empty ones too), once all chunks passed their
        audit and the rows streamed are all accounted for."""
        for dataset in datasets:
            if dataset in self._waiting or dataset not in self._writers:
                self._waiting.setdefault(dataset, [])
                if not self._waiting[dataset]:
                    self._waiting[dataset].append(registered(dataset).schema.empty_table())
                self._submit(dataset)
        for lane in self._lanes:
            for future in lane.pending:
                future.result()
            lane.pending.clear()
        self._audit.check_counts(counts, streamed_rows)
        # Every file of the day carries one publish id, so a reader can refuse to mix them
        # with another publish's files of the day while a republish replaces them one by one.
        publish = publish_id({name: self._writers[name].content_digest() for name in datasets})
        staged = {}
        for dataset in datasets:
            staged[dataset] = self._writers[dataset].close({PUBLISH_KEY: publish.encode()})
            del self._writers[dataset]
            staged[dataset].metadata = self._observed[dataset].metadata()
        return staged

    def discard(self) -> None:
        """Drop every staged file (after a failure); the published partitions stay as they are."""
        for lane in self._lanes:
            for future in lane.pending:
                future.cancel()
            lane.thread.shutdown(wait=True)
        for writer in self._writers.values():
            writer.discard()
        self._writers.clear()

    def close(self) -> None:
        for lane in self._lanes:
            lane.thread.shutdown(wait=True)


@dataclass
class _Lane:
    """One writer thread, the units of work waiting for it, the rows it was given."""

    thread: ThreadPoolExecutor
    pending: list[Future] = field(default_factory=list)
    rows: int = 0
    seconds: Seconds = field(default_factory=dict)


class _Observed:
    """Distinct tags and time range of the tables written (a tag never spans two of them:
    they are whole chunks of tags)."""

    def __init__(self, time_column: str | None) -> None:
        self.tags, self.low, self.high = 0, None, None
        self._time_column = time_column

    def add(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self.tags += pc.count_distinct(table.column("tag_id")).as_py()
        if self._time_column:
            low, high = (v.as_py() for v in pc.min_max(table[self._time_column]).values())
            self.low = low if self.low is None else min(self.low, low)
            self.high = high if self.high is None else max(self.high, high)

    def metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tags": self.tags}
        if self.low is not None:
            out["time_range"] = f"{self.low} .. {self.high}"
        return out
