"""Materialised stores for tests that read datasets but do not test the pipeline: each day's
datasets are computed by the read API's source fallback (readapi.source_fallback.SourceProducts
runs the assets' transforms on the source rows) and written through DatasetStore, in about a
second instead of a Dagster run per day."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path

import pyarrow as pa

from tagflow.io_managers import DatasetStore
from tagflow.readapi.engine.fallback import SourceProducts
from tagflow.schemas.registry import DATASETS
from tagflow.source.connection import connect
from tagflow.source.extract import read_tags

WIDTHS = ("1m", "1h", "1d")


def materialise_from_source(source_url: str, root: Path, tenant: str, days: Iterable[date]) -> None:
    """Write `tenant`'s tags and every dated dataset of `days` under `root`."""
    store = DatasetStore(root)
    with connect(source_url) as conn:
        tags = read_tags(conn, tenant)
    store.write("tags", tenant, None, tags)
    products = SourceProducts(source_url, tenant, tags)
    for day in days:
        tables: dict[str, pa.Table] = {
            "transitions": products.transitions(day, None),
            "carry_in": products.carry_in(day, None),
            "spans": products.spans(day, None),
        }
        for width in WIDTHS:
            tables[f"samples_{width}"] = products.samples(width, False, day, None)
            tables[f"samples_str_{width}"] = products.samples(width, True, day, None)
        for name, table in tables.items():
            schema = DATASETS[name].schema
            store.write(name, tenant, day, table.select(schema.names).cast(schema))
