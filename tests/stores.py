"""Materialised stores for tests that read datasets but do not test the pipeline: each day's
datasets are computed by the day's compute chain (transforms.day, what the assets run) on the
source rows and written through DatasetStore, in about a second instead of a Dagster run per day.
And reading several days of a dataset back, which only tests do."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path

import pyarrow as pa

from tagflow.io_managers import DatasetStore
from tagflow.schemas.arrow import RAW_ROWS
from tagflow.schemas.registry import DATED, dataset
from tagflow.source.connection import connect
from tagflow.source.extract import read_carry_in, read_tags, stream_day_rows
from tagflow.time_range import day_bounds
from tagflow.transforms.day import compute_day


def materialise_from_source(source_url: str, root: Path, tenant: str, days: Iterable[date]) -> None:
    """Write `tenant`'s tags and every dated dataset of `days` under `root`."""
    store = DatasetStore(root)
    with connect(source_url) as conn:
        tags = read_tags(conn, tenant).sort_by("tag_name")
        store.write("tags", tenant, None, tags)
        for day in days:
            day_start, day_end = day_bounds(day)
            batches = stream_day_rows(conn, tenant, day_start, day_end)
            raw_rows = pa.Table.from_batches(list(batches), schema=RAW_ROWS)
            raw_carry_in = read_carry_in(conn, tenant, day_start)
            result = compute_day(raw_rows, raw_carry_in, tags, day_start, day_end, tenant)
            for name in DATED:
                store.write(name, tenant, day, result.tables[name])


def read_days(store: DatasetStore, name: str, tenant: str, days: Iterable[date]) -> pa.Table:
    """Several day partitions of dataset `name` concatenated in day order."""
    tables = [store.read(name, tenant, day) for day in sorted(days)]
    return pa.concat_tables(tables) if tables else dataset(name).schema.empty_table()
