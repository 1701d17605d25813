"""What the demo shows once its plants are materialised: a summary of the files written and two
reads of the Parquet with DuckDB."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from tagflow.io_managers import DatasetStore
from tagflow.schemas.registry import DATASETS


def written_summary(store: DatasetStore, tenants: tuple[str, ...]) -> Table:
    """Files, rows and bytes per dataset over `tenants`."""
    table = Table(title="Datasets written")
    for column in ("dataset", "files", "rows", "bytes"):
        table.add_column(column, justify="left" if column == "dataset" else "right")
    for dataset, entry in DATASETS.items():
        files = rows = size = 0
        for tenant in tenants:
            days = store.materialised_days(dataset, tenant) if entry.dated else [None]
            for day in days:
                path = store.partition_path(dataset, tenant, day)
                rows += pq.ParquetFile(path.path).metadata.num_rows
                size += path.stat().st_size
                files += 1
        table.add_row(dataset, str(files), f"{rows:,}", f"{size:,}")
    return table


def show_read(console: Console, store: DatasetStore, until: datetime) -> None:
    """An hour-sampled analog tag and the spans of a state tag of the demo's `acme`."""
    hourly = duckdb.execute(
        """
        select strftime(bucket_start, '%m-%d %H:%M'), round(twa, 2), round(min, 2),
               round(max, 2), round(first, 2), round(last, 2), round(covered_s, 1), count
        from read_parquet(?, hive_partitioning = true)
        where tenant = 'acme' and tag_name = 'plant/area1/analog_00008' and bucket_start < ?
        order by bucket_start
        """,
        [store.parquet_glob("samples_1h"), until],
    ).fetchall()
    console.print(
        _rows_table(
            "acme · plant/area1/analog_00008 · samples_1h (read with DuckDB)",
            ["bucket_start", "twa", "min", "max", "first", "last", "covered_s", "count"],
            hourly,
        )
    )
    states = duckdb.execute(
        """
        select coalesce(value_string, 'NULL'), strftime(raw_begin_at, '%m-%d %H:%M:%S'),
               strftime(begin_at, '%m-%d %H:%M:%S'), strftime(end_at, '%m-%d %H:%M:%S'),
               coalesce(strftime(raw_end_at, '%m-%d %H:%M:%S'), 'open')
        from read_parquet(?, hive_partitioning = true)
        where tenant = 'acme' and tag_name = 'plant/area6/state_00013'
        order by raw_begin_at limit 6
        """,
        [store.parquet_glob("spans")],
    ).fetchall()
    console.print(
        _rows_table(
            "acme · plant/area6/state_00013 · spans (read with DuckDB)",
            ["value", "raw_begin_at", "begin_at", "end_at", "raw_end_at"],
            states,
        )
    )


def _rows_table(title: str, columns: list[str], rows: list[tuple]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    return table
