"""docs/datasets.md's one-liners for the partition columns: DuckDB, polars, pyarrow.dataset and
pandas read `tenant` as a string and `date` as a date from the same store."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds

from tagflow.io_managers import DatasetStore
from tagflow.schemas.arrow import SPANS


def test_every_reader_gives_the_partition_columns_the_same_types(tmp_path):
    store = DatasetStore(tmp_path)
    for day in (date(2026, 3, 2), date(2026, 3, 3)):
        begin = datetime(day.year, day.month, day.day, tzinfo=UTC)
        row = {"id": 1, "tag_id": 1, "tag_name": "t", "value_double": 1.0, "value_string": None,
               "raw_begin_at": begin, "raw_end_at": None, "begin_at": begin,
               "end_at": begin + timedelta(days=1)}  # fmt: skip
        store.write("spans", "acme", day, pa.Table.from_pylist([row], schema=SPANS))
    glob = str(tmp_path / "spans" / "**" / "*.parquet")

    (types,) = duckdb.sql(
        f"""select typeof(tenant), typeof(date) from read_parquet('{glob}',
            hive_partitioning = true, hive_types = {{'tenant': VARCHAR, 'date': DATE}})"""
    ).fetchall()[:1]
    assert types == ("VARCHAR", "DATE")

    schema = pl.scan_parquet(
        glob, hive_partitioning=True, hive_schema={"tenant": pl.String, "date": pl.Date}
    ).collect_schema()
    assert (schema["tenant"], schema["date"]) == (pl.String, pl.Date)

    partitions = ds.partitioning(
        pa.schema([("tenant", pa.string()), ("date", pa.date32())]), flavor="hive"
    )
    table = ds.dataset(tmp_path / "spans", format="parquet", partitioning=partitions).to_table()
    assert (table.schema.field("tenant").type, table.schema.field("date").type) == (
        pa.string(),
        pa.date32(),
    )

    frame = pd.read_parquet(tmp_path / "spans", partitioning=partitions, dtype_backend="pyarrow")
    assert (str(frame.dtypes["tenant"]), str(frame.dtypes["date"])) == (
        "string[pyarrow]",
        "date32[day][pyarrow]",
    )
