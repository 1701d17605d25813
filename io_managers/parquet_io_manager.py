"""Dagster IO manager that stores each tenant × day partition of an asset as one Parquet file.

A run covers one tenant-day or, in a backfill, a range of them. Assets hand over one
`DayOutput` per tenant-day, produced lazily, so a range run holds one day (and within it one
chunk of tags) at a time; downstream assets get `StoredDays`, which streams each stored day
back. Paths come only from DatasetStore.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from tagflow.errors import TagflowError
from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.schemas.registry import dataset as registered

# The partition dimensions every dataset is stored by (one file per tenant × day).
TENANT_DIMENSION = "tenant"
DATE_DIMENSION = "date"


def tenant_and_day(partition_key: str | dg.MultiPartitionKey) -> tuple[str, date]:
    """Split a tenant × date partition key into its tenant and day."""
    if not isinstance(partition_key, dg.MultiPartitionKey):
        raise dg.DagsterInvariantViolationError(
            f"expected a tenant × date partition key, got {partition_key!r}"
        )
    keys = partition_key.keys_by_dimension
    return keys[TENANT_DIMENSION], date.fromisoformat(keys[DATE_DIMENSION])


@dataclass
class DayOutput:
    """One tenant-day of an asset's output: a table, or tables streamed chunk by chunk.

    `metadata` may be filled by the producer while `data` is consumed (counts known only
    at the end); the IO manager reports it once the day is written."""

    tenant: str
    day: date
    data: pa.Table | Iterable[pa.Table]
    metadata: dict[str, Any] = field(default_factory=dict)


class StoredDays:
    """The stored partitions of one upstream dataset that a run reads, one tenant-day each."""

    def __init__(self, store: DatasetStore, dataset: str) -> None:
        self._store, self._dataset = store, dataset

    def read(self, tenant: str, day: date) -> pa.Table:
        return self._store.read(self._dataset, tenant, day)

    def batches(self, tenant: str, day: date) -> Iterator[pa.RecordBatch]:
        return self._store.iter_batches(self._dataset, tenant, day)


class _Observed:
    """Rows, distinct tags and time range of the tables passing through, for metadata."""

    def __init__(self, time_column: str | None) -> None:
        self.rows, self.tags, self.low, self.high = 0, set(), None, None
        self._time_column = time_column

    def watch(self, parts: Iterable[pa.Table]) -> Iterator[pa.Table]:
        for part in parts:
            self.rows += part.num_rows
            if part.num_rows:
                self.tags.update(pc.unique(part["tag_id"]).to_pylist())
                if self._time_column:
                    low, high = (v.as_py() for v in pc.min_max(part[self._time_column]).values())
                    self.low = low if self.low is None or low is None else min(self.low, low)
                    self.high = high if self.high is None or high is None else max(self.high, high)
            yield part

    def metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": self.rows, "tags": len(self.tags)}
        if self.low is not None:
            out["time_range"] = f"{self.low} .. {self.high}"
        return out


class ParquetDatasetIOManager(dg.ConfigurableIOManager):
    """Writes `{root}/{asset}/tenant=T/date=D/part-0.parquet` atomically; reads partitions back."""

    root: str

    def store(self) -> DatasetStore:
        return DatasetStore(self.root)

    def handle_output(
        self, context: dg.OutputContext, obj: pa.Table | Iterable[DayOutput] | None
    ) -> None:
        if obj is None:
            return
        dataset = context.asset_key.path[-1]
        expected = {tenant_and_day(key) for key in context.asset_partition_keys}
        if isinstance(obj, pa.Table):
            tenants = {tenant for tenant, _ in expected}
            if not registered(dataset).dated and len(tenants) == 1:
                # One file per tenant, whatever the days of the run.
                written = self.store().write(dataset, tenants.pop(), None, obj)
                context.add_output_metadata({"rows": obj.num_rows, "bytes": written})
                return
            if len(expected) != 1:
                raise dg.DagsterInvariantViolationError("a table is one partition's output")
            ((tenant, day),) = expected
            obj = [DayOutput(tenant, day, obj)]
        per_day = {}
        for output in obj:
            key = (output.tenant, output.day)
            if key not in expected or key in per_day:
                raise dg.DagsterInvariantViolationError(
                    f"{dataset}: output for {key} is not one of this run's partitions"
                )
            per_day[key] = self._write_day(dataset, output)
        missing = expected - per_day.keys()
        if missing:
            raise TagflowError(f"{dataset}: no output for {len(missing)} partition(s) of the run")
        context.add_output_metadata(_run_metadata(per_day))

    def _write_day(self, dataset: str, output: DayOutput) -> dict[str, Any]:
        observed = _Observed(registered(dataset).time_column)
        started = time.perf_counter()
        parts = [output.data] if isinstance(output.data, pa.Table) else output.data
        written = self.store().write(dataset, output.tenant, output.day, observed.watch(parts))
        return {
            **observed.metadata(),
            **output.metadata,
            "bytes": written,
            "seconds": round(time.perf_counter() - started, 3),
        }

    def load_input(self, context: dg.InputContext) -> pa.Table | StoredDays:
        dataset = context.asset_key.path[-1]
        store = self.store()
        if not registered(dataset).dated:
            tenants = {tenant_and_day(key)[0] for key in context.asset_partition_keys}
            if len(tenants) != 1:
                raise dg.DagsterInvariantViolationError("a run covers exactly one tenant")
            return store.read(dataset, tenants.pop())
        return StoredDays(store, dataset)


def _run_metadata(per_day: dict[tuple[str, date], dict[str, Any]]) -> dict[str, Any]:
    """One day's figures as they are; for a range, the totals and a per-day table (Dagster
    gives every partition of a run the same metadata)."""
    if len(per_day) == 1:
        return next(iter(per_day.values()))
    totals: dict[str, Any] = {}
    for figures in per_day.values():
        for name, value in figures.items():
            # Distinct tags do not add up over days.
            if isinstance(value, int | float) and name != "tags":
                totals[name] = round(totals.get(name, 0) + value, 3)
    days = {f"{tenant} {day.isoformat()}": figures for (tenant, day), figures in per_day.items()}
    return {**totals, "days": dg.MetadataValue.json(json.loads(json.dumps(days, default=str)))}
