"""Write and audit every dataset of one tenant-day as its chunks are computed, in a second
thread, so that checking and compressing chunk k overlaps computing chunk k+1.

Chunks of a dataset are gathered until they hold WRITE_BATCH_ROWS rows (small datasets, such as the
daily samples, are then audited and written once a day instead of once a chunk), audited
against the dataset's pandera schema and its seams, and written to the dataset's staged file.
Nothing is published here: `finish` returns the staged partitions once every chunk passed and
the row accounting holds, each stamped with the day's publish id (day_publish), and any
failure discards them all.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
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

# Units of work waiting for the writer thread: bounds memory when checking lags computing.
_PENDING = 2


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
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="tagflow-write")
        self._pending: list[Future] = []
        self._observed: dict[str, _Observed] = {}
        # Seconds the writer thread spent auditing and writing (alongside the computing).
        self.seconds: Seconds = {}

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
        self._pending.append(self._thread.submit(self._check_and_write, dataset, tables))
        while len(self._pending) > _PENDING:
            self._pending.pop(0).result()  # raises the writer thread's failure here

    def _check_and_write(self, dataset: str, tables: list[pa.Table]) -> None:
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        with timed(self.seconds, "audit_s"):
            self._audit.check(dataset, table)
        with timed(self.seconds, "write_s"):
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
        for future in self._pending:
            future.result()
        self._pending.clear()
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
        for future in self._pending:
            future.cancel()
        self._thread.shutdown(wait=True)
        for writer in self._writers.values():
            writer.discard()
        self._writers.clear()

    def close(self) -> None:
        self._thread.shutdown(wait=True)


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
