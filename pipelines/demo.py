"""`tagflow demo`: embedded PostgreSQL, two synthetic plants, a Dagster materialisation of every
asset, a summary of what was written and one read of the Parquet with DuckDB."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from io_managers import DatasetStore
from pipelines.embedded_pg import DEFAULT_DATA_DIR, embedded_server_url
from pipelines.instance import dagster_instance
from pipelines.materialize import materialize_days
from pipelines.resources import DEFAULT_STORE
from pipelines.synthetic_plant import generate_plant
from schemas.arrow import DATASET_SCHEMAS
from tagflow.errors import TagflowError

DEMO_TENANTS = ("acme", "globex")


def run_demo(console: Console, *, tags: int, days: int, progress: Progress) -> None:
    console.print("starting the embedded PostgreSQL (.tagflow/pg)")
    url = embedded_server_url(DEFAULT_DATA_DIR)
    plant = generate_plant(url, DEMO_TENANTS, tags=tags, days=days, seed=7)
    for tenant in plant.tenants:
        console.print(
            f"tenant {tenant.tenant}: {tenant.tags} tags, {tenant.numeric_rows} numeric and "
            f"{tenant.string_rows} string rows"
        )
    store = DatasetStore(DEFAULT_STORE)
    instance = dagster_instance()
    first, stop = plant.start.date(), plant.end.date()
    failed = 0
    with progress:
        task = progress.add_task("materialise", total=len(DEMO_TENANTS) * days)
        for tenant in DEMO_TENANTS:
            runs = materialize_days(
                tenant, first, stop, instance, source_url=url, store_root=DEFAULT_STORE,
                on_partition_done=lambda run: progress.advance(task),
            )  # fmt: skip
            failed += sum(not run.success for run in runs)
    if failed:
        raise TagflowError(f"{failed} tenant-day runs failed; see the Dagster UI for details")
    console.print(_written_summary(store))
    _show_read(console, store, plant.start + timedelta(hours=6))
    console.print(
        f"{len(DEMO_TENANTS) * days} Dagster runs recorded in $DAGSTER_HOME (.tagflow/dagster). "
        "Open the UI with: DAGSTER_HOME=$PWD/.tagflow/dagster dagster dev -w workspace.yaml"
    )


def _written_summary(store: DatasetStore) -> Table:
    table = Table(title=f"Datasets written under {DEFAULT_STORE}")
    for column in ("dataset", "files", "rows", "bytes"):
        table.add_column(column, justify="left" if column == "dataset" else "right")
    for dataset in DATASET_SCHEMAS:
        files = rows = size = 0
        for tenant in DEMO_TENANTS:
            days = [None] if dataset == "tags" else store.materialised_days(dataset, tenant)
            for day in days:
                path = store.partition_path(dataset, tenant, day)
                rows += pq.ParquetFile(path.path).metadata.num_rows
                size += path.stat().st_size
                files += 1
        table.add_row(dataset, str(files), f"{rows:,}", f"{size:,}")
    return table


def _show_read(console: Console, store: DatasetStore, until) -> None:
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
