"""Day products read from the materialised datasets: a day's transitions, carry-in, spans and
samples of some tags. Reads go through DatasetStore (the only code that knows paths), find the
tags by id in each file's tag directory, and name them as the tenant's catalogue does now: a
renamed tag's whole history answers to its current name.

Where a read covers several days of a month that has a month copy (io_managers/compaction.py),
those days are read from the copy in one go, each only if its day file is still the one the
copy was made from; any other day is read from its own file. A read of spans takes the copy's
rows of all its days as one table (read_from_copies), the others a table per day.

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
from tagflow.readapi.engine.pools import SharedPool
from tagflow.schemas.registry import DATASETS
from tagflow.time_range import day_bounds, to_us
from tagflow.transforms.columns import time_us

# Days of one month a read must cover for the month copy to be worth reading instead.
MIN_COPY_DAYS = 2
# The month copies of a read over months are read concurrently, on threads of their own: a
# month's read never waits on this pool, so it cannot wait on itself, whichever thread (a day
# reader's among them) the read runs on.
MONTH_READERS = SharedPool(4, "tagflow-month")
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


class _MonthRows:
    """The rows of one read's tags in a month copy, of the days it answers (`publishes`: each
    fresh day with its publish id), in file order (by tag, then day)."""

    def __init__(
        self, table: pa.Table, day_of_row: np.ndarray, publishes: dict[date, str | None]
    ) -> None:
        self.table = table
        self.day_of_row = day_of_row  # 0 for the month's first day
        self.publishes = publishes
        self._by_day: tuple[pa.Table, np.ndarray] | None = None
        self._lock = threading.Lock()

    def rows_of(self, days: Sequence[date]) -> pa.Table:
        """The rows of `days` (all held here) in file order."""
        if len(days) == len(self.publishes):
            return self.table
        keep = np.isin(self.day_of_row, np.asarray([d.day - 1 for d in days], np.int64))
        return self.table.filter(pa.array(keep))

    def day_rows(self, day: date) -> pa.Table:
        """The rows of `day` (held here), in the order of its own file."""
        with self._lock:
            if self._by_day is None:
                order = np.argsort(self.day_of_row, kind="stable")  # each day's rows in order
                self._by_day = (self.table.take(pa.array(order)), self.day_of_row[order])
        table, day_of_row = self._by_day
        low, high = np.searchsorted(day_of_row, [day.day - 1, day.day])
        return table.slice(int(low), int(high - low))


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
        # Month copies read for this read (None: not used); one lock per copy so the threads
        # reading its days wait for one read of it instead of each making their own.
        self._months: dict[_MonthKey, _MonthRows | None] = {}
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
            month = self._month(dataset, day, ids, names)
            if month is not None and day in month.publishes:
                self._same_publish(dataset, day, month.publishes[day])
                return month.day_rows(day)
        return self._read_day_file(dataset, day, ids, names)

    def _read_day_file(
        self, dataset: str, day: date, ids: np.ndarray | None, names: list[str]
    ) -> pa.Table:
        # tag_id costs nothing to read (the tag directory has it); stored names may be stale.
        read = [name for name in names if name not in ("tag_id", "tag_name")]
        table = self._store.read_tag_rows(
            dataset, self._tenant, day, ids, [*read, "tag_id"], self._taker(dataset),
            lambda footer: self._same_publish(dataset, day, footer.publish),
        )  # fmt: skip
        return self._named(table, names)

    def read_from_copies(
        self,
        dataset: str,
        days: Sequence[date],
        tags: pa.Table | None,
        columns: Sequence[str] | None = None,
    ) -> tuple[pa.Table, list[date]]:
        """(the rows of those of `days` that month copies answer, in one table, `columns` only
        (None = every column); the days left for their own files). Each copy is read once for
        all its days, and its rows are only filtered where the read wants some of its days but
        not others: no table per day."""
        schema = DATASETS[dataset].schema
        names = list(columns) if columns is not None else schema.names
        ids = None if tags is None else tags.column("tag_id").to_numpy()
        by_month = _by_month(days)

        def read(month_start: date) -> _MonthRows | None:
            return self._month(dataset, month_start, ids, names)

        reading = MONTH_READERS.get().map if len(by_month) > 1 else map
        months = list(reading(read, by_month))
        parts, rest = [], []
        for wanted, month in zip(by_month.values(), months, strict=True):
            held = [] if month is None else [d for d in wanted if d in month.publishes]
            rest += [d for d in wanted if d not in held]
            if month is None or not held:
                continue
            for day in held:
                self._same_publish(dataset, day, month.publishes[day])
            parts.append(month.rows_of(held))
        table = pa.concat_tables(parts) if parts else schema.empty_table().select(names)
        return table, rest

    def tags_with_rows(self, dataset: str, days: Sequence[date]) -> tuple[np.ndarray, list[date]]:
        """(the ids of the tags with a row of `dataset` on any of those of `days` whose files
        say so in their tag directories, nothing decoded; the days left). A month copy answers
        where the read wants every day it holds, fresh; other days their own file's footer.
        An id appears once per file that lists it."""
        found, rest = [], []
        for month, wanted in _by_month(days).items():
            ids = self._month_tags(dataset, month, wanted)
            if ids is not None:
                found.append(ids)
                continue
            for day in wanted:
                footer = self._store.day_footer(dataset, self._tenant, day)
                if footer is None or footer.directory is None:
                    rest.append(day)
                    continue
                self._same_publish(dataset, day, footer.publish)
                found.append(footer.directory.sorted_ids)
        return np.concatenate([np.empty(0, np.int64), *found]), rest

    def _month_tags(self, dataset: str, month: date, wanted: list[date]) -> np.ndarray | None:
        """The tags of `month`'s copy when it holds exactly `wanted`, every day fresh."""
        if len(wanted) < MIN_COPY_DAYS:
            return None
        footer = self._store.month_footer(dataset, self._tenant, month)
        if footer is None or footer.directory is None:
            return None
        held, publishes = compacted_days(footer), compacted_publishes(footer)
        if set(held) != set(wanted) or self._fresh(dataset, held, wanted) != wanted:
            return None
        for day in wanted:
            self._same_publish(dataset, day, publishes[day])
        return footer.directory.sorted_ids

    def _fresh(
        self, dataset: str, held: dict[date, tuple[int, int]], wanted: list[date]
    ) -> list[date]:
        """The days of `wanted` a month copy holding `held` (compacted_days) answers: those
        whose day file is still the one it was copied from."""
        return [
            day for day in wanted
            if day in held and held[day] == self._store.day_identity(dataset, self._tenant, day)
        ]  # fmt: skip

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

    def _month(
        self, dataset: str, day: date, ids: np.ndarray | None, names: list[str]
    ) -> _MonthRows | None:
        """The read's rows of `day`'s month copy, read once per read (None if not worth it,
        absent, or matching too few of the read's days' files)."""
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
    ) -> _MonthRows | None:
        wanted = [d for d in self._days if (d.year, d.month) == (month.year, month.month)]
        if len(wanted) < MIN_COPY_DAYS:
            return None
        try:
            return self._month_rows(dataset, month, ids, names, wanted)
        except CorruptPartition:
            # An unreadable copy (logged) is no answer: the day files are.
            return None

    def _month_rows(
        self,
        dataset: str,
        month: date,
        ids: np.ndarray | None,
        names: list[str],
        wanted: list[date],
    ) -> _MonthRows | None:
        footer = self._store.month_footer(dataset, self._tenant, month)
        if footer is None:
            return None
        held, publishes = compacted_days(footer), compacted_publishes(footer)
        fresh = self._fresh(dataset, held, wanted)
        if len(fresh) < MIN_COPY_DAYS:
            return None
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
        # Rows of days the copy holds but that are not fresh (or not read) are never answered.
        # A lookup by day of the month (every row is in the month's window): isin hashed
        # every row.
        is_fresh = np.zeros(31, bool)
        is_fresh[[d.day - 1 for d in fresh]] = True
        keep = is_fresh[day_of_row]
        if not keep.all():
            table, day_of_row = table.filter(pa.array(keep)), day_of_row[keep]
        return _MonthRows(self._named(table, names), day_of_row, {d: publishes[d] for d in fresh})


def _by_month(days: Sequence[date]) -> dict[date, list[date]]:
    """`days` by the first day of their month, in the order given."""
    by_month: dict[date, list[date]] = {}
    for day in days:
        by_month.setdefault(day.replace(day=1), []).append(day)
    return by_month
