"""The Dagster IO manager over the dataset store: it publishes what an asset staged and reports
each partition's metadata, Dagster's standard keys included.

A run covers one tenant-day or, in a backfill, a range of them. The day asset hands over, per
dataset, the partitions it wrote and audited (StagedPartition, one per tenant-day), which are
published here; the tags asset returns its table, audited and written here. Paths come only
from DatasetStore.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import dagster as dg
import pyarrow as pa

from tagflow.errors import TagflowError
from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.io_managers.partition_writer import StagedPartition
from tagflow.schemas.dataset_checks import audit_table
from tagflow.schemas.registry import dataset as registered

# The partition dimensions every dataset is stored by (one file per tenant × day).
TENANT_DIMENSION = "tenant"
DATE_DIMENSION = "date"
# Metadata keys of what was written: the check compares the published file against them.
ROWS_KEY = "dagster/row_count"
SHA256_KEY = "content_sha256"


def tenant_and_day(partition_key: str | dg.MultiPartitionKey) -> tuple[str, date]:
    """Split a tenant × date partition key into its tenant and day."""
    if not isinstance(partition_key, dg.MultiPartitionKey):
        raise dg.DagsterInvariantViolationError(
            f"expected a tenant × date partition key, got {partition_key!r}"
        )
    keys = partition_key.keys_by_dimension
    return keys[TENANT_DIMENSION], date.fromisoformat(keys[DATE_DIMENSION])


def column_schema(dataset: str) -> dg.TableSchema:
    """The dataset's Arrow schema as Dagster's column schema (the catalog's Columns tab)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(field.name, str(field.type)) for field in registered(dataset).schema
        ]
    )


def published_metadata(staged: StagedPartition) -> dict[str, Any]:
    """What a materialisation records of one published partition."""
    relative = f"{staged.dataset}/tenant={staged.tenant}"
    if staged.day is not None:
        relative += f"/date={staged.day.isoformat()}"
    return {
        ROWS_KEY: staged.rows,
        # Relative to the store root, which may name a private folder or a bucket.
        "dagster/relation_identifier": relative,
        "bytes": staged.bytes,
        SHA256_KEY: staged.sha256,
        **staged.metadata,
    }


class ParquetDatasetIOManager(dg.ConfigurableIOManager):
    """Publishes `{root}/{asset}/tenant=T/date=D/part-0.parquet` atomically; reads tags back."""

    root: str

    def store(self) -> DatasetStore:
        return DatasetStore(self.root)

    def handle_output(
        self, context: dg.OutputContext, obj: pa.Table | list[StagedPartition] | None
    ) -> None:
        if obj is None:
            return
        dataset = context.asset_key.path[-1]
        expected = {tenant_and_day(key) for key in context.asset_partition_keys}
        if isinstance(obj, pa.Table):
            obj = [self._write_undated(dataset, obj, expected)]
        published: dict[tuple[str, date | None], dict[str, Any]] = {}
        for staged in obj:
            key = (staged.tenant, staged.day)
            if staged.dataset != dataset or (staged.day is not None and key not in expected):
                raise dg.DagsterInvariantViolationError(
                    f"{dataset}: output for {key} is not one of this run's partitions"
                )
            if staged.day is not None:
                staged.publish()
            published[key] = published_metadata(staged)
        missing = {k for k in expected if k not in published} if registered(dataset).dated else ()
        if missing:
            raise TagflowError(f"{dataset}: no output for {len(missing)} partition(s) of the run")
        context.add_output_metadata(
            {**_run_metadata(published), "dagster/column_schema": column_schema(dataset)}
        )

    def _write_undated(
        self, dataset: str, table: pa.Table, expected: set[tuple[str, date]]
    ) -> StagedPartition:
        """One file per tenant, whatever the days of the run; audited before it is written."""
        tenants = {tenant for tenant, _ in expected}
        if registered(dataset).dated or len(tenants) != 1:
            raise dg.DagsterInvariantViolationError("a table is one tenant's undated output")
        audit_table(dataset, table)
        return self.store().write(dataset, tenants.pop(), None, table)

    def load_input(self, context: dg.InputContext) -> pa.Table:
        dataset = context.asset_key.path[-1]
        if registered(dataset).dated:
            raise dg.DagsterInvariantViolationError(
                f"{dataset} is read through the store, not loaded as an input"
            )
        tenants = {tenant_and_day(key)[0] for key in context.asset_partition_keys}
        if len(tenants) != 1:
            raise dg.DagsterInvariantViolationError("a run covers exactly one tenant")
        return self.store().read(dataset, tenants.pop())


def _run_metadata(per_day: dict[tuple[str, date | None], dict[str, Any]]) -> dict[str, Any]:
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
    days = {f"{tenant} {day}": figures for (tenant, day), figures in per_day.items()}
    return {**totals, "days": dg.MetadataValue.json(json.loads(json.dumps(days, default=str)))}
