"""Materialisation metadata shared by the assets: rows, tags, covered time range, timing."""

import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from io_managers.parquet_io_manager import tenant_and_day


def partition_of(context: dg.AssetExecutionContext):
    """(tenant, day) of the partition being materialised."""
    return tenant_and_day(context.partition_key)


def table_metadata(table: pa.Table, time_column: str | None) -> dict[str, dg.MetadataValue]:
    metadata = {
        "rows": dg.MetadataValue.int(table.num_rows),
        "tags": dg.MetadataValue.int(len(pc.unique(table["tag_id"])) if table.num_rows else 0),
    }
    if time_column and table.num_rows:
        low, high = pc.min_max(table[time_column]).values()
        metadata["time_range"] = dg.MetadataValue.text(f"{low.as_py()} .. {high.as_py()}")
    return metadata


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """Yields a dict whose 'seconds' holds the elapsed time once the block ends."""
    elapsed = {"seconds": 0.0}
    started = time.perf_counter()
    try:
        yield elapsed
    finally:
        elapsed["seconds"] = round(time.perf_counter() - started, 3)
