"""Day products read from the materialised datasets: a day's transitions, carry-in, spans and
samples of some tags. Reads go through DatasetStore (the only code that knows paths), find the
tags by id in each file's tag directory, and name them as the tenant's catalogue does now: a
renamed tag's whole history answers to its current name.

Where a read covers several days of a month that has a month copy (io_managers/compaction.py),
those days are read from the copy in one go, each only if its day file is still the one the
copy was made from; any other day is read from its own file.

One read takes every dataset of a day from one publish: each file read (or day of a month copy)
is checked against the publish id of the day's first one, and a read meeting two publishes of
a day (a republish replacing the day's files one after another) stops with MixedPublishes, for
the reader to read again once the publish is complete."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa

from tagflow.errors import CorruptPartition
from tagflow.io_managers.compaction import (
    COMPACTED_DATASETS,
    compacted_days,
    compacted_publishes,
)
from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.io_managers.partition_reader import Window
from tagflow.readapi.engine.day_products import DayProducts
from tagflow.readapi.engine.limits import RowBudget
from tagflow.schemas.registry import DATASETS
from tagflow.time_range import day_bounds, to_us
from tagflow.transforms.columns import time_us

# Days of one month a read must cover for the month copy to be worth reading instead.
MIN_COPY_DAYS = 2
_DAY_US = 86_400_000_000

_MonthKey = tuple[str, date, tuple[int, ...] | None, tuple[str, ...]]
# The order the day step publishes a day's datasets in (one after another, as registered).
_PUBLISH_ORDER = {name: rank for rank, name in enumerate(DATASETS)}


class MixedPublishes(Exception):
    """A read met files of two publishes of one stored day: a republish is under way (or was
    stopped part-way). `dataset` is the one published later of the two, which the publish
    has yet to replace."""

    def __init__(self, dataset: str, day: date) -> None:
        super().__init__(f"{dataset} on {day.isoformat()} is of another publish of the day")
        self.dataset, self.day = dataset, day


class StoredProducts(DayProducts):
    """One tenant's stored days for one read of `days`, named by `catalogue` (TAGS rows),
    within the read's row budget. Every method takes `tags`, the TAGS rows of the tags to read
    (None = every tag of the catalogue)."""

    def __init__(
        self,
        store: DatasetStore,
        tenant: str,
        catalogue: pa.Table,
        budget: RowBudget,
        days: Sequence[date] = (),
    ) -> None:
        self._store = store
        self._tenant = tenant
        self._budget = budget
        self._days = sorted(days)
        ids = catalogue.column("tag_id").to_numpy()
        order = np.argsort(ids, kind="stable")
        self._ids = ids[order]
        self._names = catalogue.column("tag_name").take(pa.array(order))
        # Month copies read for this read, split by day; one lock per copy so the threads
        # reading its days wait for one read of it instead of each making their own.
        self._months: dict[_MonthKey, dict[date, tuple[pa.Table, str | None]]] = {}
        self._month_locks: dict[_MonthKey, threading.Lock] = {}
        self._lock = threading.Lock()
        # day → (the first dataset read of it, that file's publish id).
        self._publishes: dict[date, tuple[str, str | None]] = {}

    def _same_publish(self, dataset: str, day: date, publish: str | None) -> None:
        """Record that this read took `dataset` of `day` from `publish`; MixedPublishes if
        another dataset of the day was taken from another publish."""
        with self._lock:
            first, first_publish = self._publishes.setdefault(day, (dataset, publish))
        if first_publish != publish:
            later = max(first, dataset, key=_PUBLISH_ORDER.__getitem__)
            raise MixedPublishes(later, day)

    def read(
        self, dataset: str, day: date, tags: pa.Table | None, columns: Sequence[str] | None = None
    ) -> pa.Table:
        names = list(columns) if columns is not None else DATASETS[dataset].schema.names
        ids = None if tags is None else tags.column("tag_id").to_numpy()
        if dataset in COMPACTED_DATASETS:
            from_copy = self._month_days(dataset, day, ids, names).get(day)
            if from_copy is not None:
                table, publish = from_copy
                self._same_publish(dataset, day, publish)
                return table
        # tag_id costs nothing to read (the tag directory has it); stored names may be stale.
        read = [name for name in names if name not in ("tag_id", "tag_name")]
        table = self._store.read_tag_rows(
            dataset, self._tenant, day, ids, [*read, "tag_id"], self._taker(dataset),
            lambda footer: self._same_publish(dataset, day, footer.publish),
        )  # fmt: skip
        return self._named(table, names)

    def _taker(self, dataset: str):
        return lambda rows: self._budget.take(rows, dataset)

    def _named(self, table: pa.Table, names: list[str]) -> pa.Table:
        """`table` (with tag_id) as `names`, tag_name from the catalogue."""
        found = table.column("tag_id").to_numpy()
        at = np.minimum(np.searchsorted(self._ids, found), max(len(self._ids) - 1, 0))
        known = self._ids[at] == found if len(self._ids) else np.zeros(len(found), bool)
        if not known.all():
            # A tag the catalogue no longer lists (deleted from the source) is not answered.
            table, at = table.filter(pa.array(known)), at[known]
        if "tag_name" in names:
            table = table.append_column("tag_name", self._names.take(pa.array(at)))
        return table.select(names)

    def _month_days(
        self, dataset: str, day: date, ids: np.ndarray | None, names: list[str]
    ) -> dict[date, tuple[pa.Table, str | None]]:
        """The read's days of `day`'s month answered by the month copy, each with the publish
        id of the day file it was copied from (none if not worth it, absent, or no longer
        matching those days' files)."""
        month = day.replace(day=1)
        key = (dataset, month, None if ids is None else tuple(ids.tolist()), tuple(names))
        with self._lock:
            lock = self._month_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._months:
                self._months[key] = self._read_month(dataset, month, ids, names)
            return self._months[key]

    def _read_month(
        self, dataset: str, month: date, ids: np.ndarray | None, names: list[str]
    ) -> dict[date, tuple[pa.Table, str | None]]:
        wanted = [d for d in self._days if (d.year, d.month) == (month.year, month.month)]
        if len(wanted) < MIN_COPY_DAYS:
            return {}
        try:
            return self._split_month(dataset, month, ids, names, wanted)
        except CorruptPartition:
            # An unreadable copy (logged) is no answer: the day files are.
            return {}

    def _split_month(
        self,
        dataset: str,
        month: date,
        ids: np.ndarray | None,
        names: list[str],
        wanted: list[date],
    ) -> dict[date, tuple[pa.Table, str | None]]:
        footer = self._store.month_footer(dataset, self._tenant, month)
        if footer is None:
            return {}
        held, publishes = compacted_days(footer), compacted_publishes(footer)
        fresh = [
            d for d in wanted
            if d in held and held[d] == self._store.day_identity(dataset, self._tenant, d)
        ]  # fmt: skip
        if len(fresh) < MIN_COPY_DAYS:
            return {}
        column = DATASETS[dataset].time_column
        assert column is not None  # every dataset with month copies is dated
        window = Window(column, (to_us(day_bounds(fresh[0])[0]), to_us(day_bounds(fresh[-1])[1])))
        read = [name for name in names if name not in ("tag_id", "tag_name", column)]
        table = self._store.read_month_rows(
            dataset, self._tenant, month, ids, [*read, column, "tag_id"], window,
            self._taker(dataset),
        )  # fmt: skip
        month_start_us = to_us(datetime(month.year, month.month, 1, tzinfo=UTC))
        day_of_row = (time_us(table.column(column)) - month_start_us) // _DAY_US
        order = np.argsort(day_of_row, kind="stable")  # by day, each day's rows in file order
        table = self._named(table.take(pa.array(order)), names)
        day_of_row = day_of_row[order]
        out = {}
        for d in fresh:
            index = d.day - 1
            low, high = np.searchsorted(day_of_row, [index, index + 1])
            out[d] = (table.slice(int(low), int(high - low)), publishes[d])
        return out
