"""Month copies of the dated datasets, for the read API: a closed month's day partitions
rewritten as one file clustered by tag (each tag's rows of every day, in day order), with its
tag directory. A read of a few tags over weeks then decodes a few row groups of one file instead
of one per day: 30 footers, 30 opens and 30 partly wasted row groups become one of each.

A copy records the identity (size, mtime) of every day file it was made from. A day rewritten
since (a rerun, late data) no longer matches, and readers take that day from its own file, so a
copy can be behind its days but never answers for them wrongly. The day partitions stay the
datasets (DESIGN §3); a copy is only ever a faster way to read them.
"""

from __future__ import annotations

import json
from calendar import monthrange
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pyarrow as pa

from tagflow.chunk_sizes import COPY_BATCH_ROWS
from tagflow.io_managers import partition_reader
from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.io_managers.partition_writer import StagedPartition
from tagflow.io_managers.unreadable import corrupt_if_unreadable
from tagflow.read_ahead import read_ahead
from tagflow.schemas.registry import DATASETS
from tagflow.schemas.registry import dataset as registered

# The datasets with month copies: every dated one but carry_in (a read needs only its first
# day's).
COMPACTED_DATASETS = tuple(
    name for name in sorted(DATASETS) if DATASETS[name].dated and name != "carry_in"
)
COMPACTED_DAYS_KEY = b"tagflow.compacted_days"
# Each day's publish id (day_publish) as its day file had it, for readers that check that one
# read takes a day's datasets from one publish; absent from copies made before ids.
COMPACTED_PUBLISHES_KEY = b"tagflow.compacted_publishes"
# Bigger groups than a day file's: a month of 1-minute samples of 2,000 tags is 69 M rows, whose
# footer at 4 K-row groups was 19 MB (160 ms to parse cold); at 16 K it is a quarter of that,
# and a tag's month of 1-minute samples is still only three groups.
MONTH_GROUP_ROWS = 16_384


def month_days(month: date) -> list[date]:
    return [month + timedelta(days=k) for k in range(monthrange(month.year, month.month)[1])]


def compacted_days(footer: partition_reader.Footer) -> dict[date, tuple[int, int]]:
    """The days a month copy holds, with the identity each day file had when copied."""
    raw = (footer.metadata.metadata or {}).get(COMPACTED_DAYS_KEY)
    if raw is None:
        return {}
    held = json.loads(raw)
    return {date.fromisoformat(day): (size, mtime) for day, (size, mtime) in held.items()}


def compacted_publishes(footer: partition_reader.Footer) -> dict[date, str | None]:
    """The publish id of each day a month copy holds (None where unknown)."""
    raw = (footer.metadata.metadata or {}).get(COMPACTED_PUBLISHES_KEY)
    held = {} if raw is None else json.loads(raw)
    return {day: held.get(day.isoformat()) for day in compacted_days(footer)}


def months_to_copy(
    store: DatasetStore, tenant: str, today: date, settle_days: int
) -> list[tuple[date, int]]:
    """The tenant's closed months (ended at least `settle_days` before `today`, so late data
    has been rerun) whose copy is missing or behind their days, each with the newest day
    file's mtime (a token that changes when a day is rewritten). Judged on spans, which every
    day writes with the rest."""
    by_month: dict[date, list[date]] = {}
    for day in store.materialised_days("spans", tenant):
        by_month.setdefault(day.replace(day=1), []).append(day)
    out = []
    for month, days in sorted(by_month.items()):
        if month_days(month)[-1] + timedelta(days=settle_days) >= today:
            continue
        identities = {day: store.day_identity("spans", tenant, day) for day in days}
        footer = store.month_footer("spans", tenant, month)
        if footer is None or compacted_days(footer) != identities:
            newest = max((identity[1] for identity in identities.values() if identity), default=0)
            out.append((month, newest))
    return out


@dataclass(frozen=True)
class _Day:
    day: date
    identity: tuple[int, int]
    publish: str | None
    file: partition_reader.OpenFile
    ids: np.ndarray  # tag ids in file order
    counts: np.ndarray


def compact_month(
    store: DatasetStore, dataset: str, tenant: str, month: date, names: pa.Table
) -> StagedPartition | None:
    """The staged month copy of `dataset` for `tenant` (None when no day of the month is
    materialised), its tags ordered and named by `names` (the tenant's current tags: a tag
    renamed during the month is one run under its current name)."""
    with _days_of(store, dataset, tenant, month) as days:
        if not days:
            return None
        return _copy(store, dataset, tenant, month, names, days)


def _copy(
    store: DatasetStore, dataset: str, tenant: str, month: date, names: pa.Table, days: list[_Day]
) -> StagedPartition:
    schema = registered(dataset).schema
    order, name_of = _tag_order(days, names, dataset, tenant, schema)
    identities = {d.day.isoformat(): list(d.identity) for d in days}
    publishes = {d.day.isoformat(): d.publish for d in days}
    key_value = {
        COMPACTED_DAYS_KEY: json.dumps(identities, separators=(",", ":")).encode(),
        COMPACTED_PUBLISHES_KEY: json.dumps(publishes, separators=(",", ":")).encode(),
    }
    columns = [name for name in schema.names if name != "tag_name"]

    def gathered(start: int, end: int) -> pa.Table:
        chunk = order[start:end]
        chunk_ids = chunk.tolist()
        parts, ranks, day_index = [], [], []
        for index, day in enumerate(days):
            part = _read(day, dataset, tenant, chunk_ids, columns, schema)
            parts.append(part)
            ranks.append(_positions(chunk, part.column("tag_id").to_numpy()))
            day_index.append(np.full(part.num_rows, index, np.int64))
        table = pa.concat_tables(parts)
        rank_of_row, day_of_row = np.concatenate(ranks), np.concatenate(day_index)
        # By tag (in name order), then day; lexsort is stable, so each day's own order holds.
        table = table.take(pa.array(np.lexsort((day_of_row, rank_of_row))))
        named = name_of.take(pa.array(np.sort(rank_of_row) + start))
        return table.append_column("tag_name", named).select(schema.names)

    # The next chunk is gathered (decoded, ordered) while this one is encoded: a month of
    # 1-minute samples copied 1.5x faster on two cores, with chunks half the size to hold the
    # same memory.
    tables = (gathered(start, end) for start, end in _chunks(order, days))
    with (
        store.stage_month(dataset, tenant, month, MONTH_GROUP_ROWS, key_value) as writer,
        read_ahead(tables, 1, "tagflow-copy") as ahead,
    ):
        for table in ahead:
            writer.write(table)
        staged = writer.close()
    staged.metadata["days"] = len(days)
    return staged


@contextmanager
def _days_of(store: DatasetStore, dataset: str, tenant: str, month: date) -> Iterator[list[_Day]]:
    """The month's materialised days of `dataset`, each file held open for the copy."""
    days: list[_Day] = []
    try:
        for day in month_days(month):
            opened = store.open_day(dataset, tenant, day)
            if opened is None:
                continue
            footer = opened.footer
            days.append(_Day(day, opened.identity, footer.publish, opened, *_runs(footer)))
            if footer.directory is None:
                raise ValueError(f"{dataset} of {day} has no tag directory: materialise it again")
        yield days
    finally:
        for held in days:
            held.file.close()


def _read(
    day: _Day, dataset: str, tenant: str, tag_ids: list[int], columns: list[str], schema: pa.Schema
) -> pa.Table:
    """Rows of one day's file; a file that cannot be decoded is a CorruptPartition, which
    names no path."""
    with corrupt_if_unreadable(dataset, tenant, day.day):
        return day.file.read(tag_ids, columns, schema)


def _runs(footer: partition_reader.Footer) -> tuple[np.ndarray, np.ndarray]:
    if footer.directory is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return partition_reader.runs_in_file_order(footer.directory)


def _tag_order(
    days: list[_Day], names: pa.Table, dataset: str, tenant: str, schema: pa.Schema
) -> tuple[np.ndarray, pa.Array]:
    """Every tag id of the month in the order of its current name, and those names; a tag the
    tenant no longer lists keeps the name its last day stored."""
    ids = np.unique(np.concatenate([d.ids for d in days]))
    current = _names_by_id(names)
    missing = [tag_id for tag_id in ids.tolist() if tag_id not in current]
    for day in reversed(days):
        if not missing:
            break
        found = _read(day, dataset, tenant, missing, ["tag_id", "tag_name"], schema)
        current = _names_by_id(found) | current
        missing = [tag_id for tag_id in missing if tag_id not in current]
    labels = [current[tag_id] for tag_id in ids.tolist()]
    order = sorted(range(len(ids)), key=lambda k: labels[k])
    return ids[order], pa.array([labels[k] for k in order], pa.string())


def _positions(order: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Where each of `ids` (all present in `order`) stands in `order`."""
    sorter = np.argsort(order, kind="stable")
    return sorter[np.searchsorted(order, ids, sorter=sorter)]


def _names_by_id(table: pa.Table) -> dict[int, str]:
    ids, names = table.column("tag_id").to_pylist(), table.column("tag_name").to_pylist()
    return dict(zip(ids, names, strict=True))


def _chunks(order: np.ndarray, days: list[_Day]) -> Iterator[tuple[int, int]]:
    """Consecutive [start, end) slices of `order` holding about COPY_BATCH_ROWS rows over all days
    (a tag's rows are never split)."""
    rows = np.zeros(len(order), np.int64)
    for day in days:
        np.add.at(rows, _positions(order, day.ids), day.counts)
    start, total = 0, 0
    for k, count in enumerate(rows.tolist()):
        if total and total + count > COPY_BATCH_ROWS:
            yield start, k
            start, total = k, 0
        total += count
    if start < len(order):
        yield start, len(order)
