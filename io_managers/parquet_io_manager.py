"""The Dagster IO manager over the dataset store: it publishes what the day asset staged and
reports each partition's metadata, Dagster's standard keys included.

A run covers one tenant-day or, in a backfill, a range of them. The day asset hands over, per
dataset, the partitions it wrote and audited (StagedPartition: one per tenant-day, one per
tenant for the undated tags), which are published here (write–audit–publish: only what passed
its audit reaches this point). Paths come only from DatasetStore.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import dagster as dg
import pyarrow as pa

from tagflow.errors import TagflowError
from tagflow.io_managers.dataset_store import DatasetStore, partition_folder
from tagflow.io_managers.partition_writer import StagedPartition
from tagflow.io_managers.sweeper import SweepReport, sweep_stale_temp_files
from tagflow.schemas.registry import dataset as registered
from tagflow.settings import Settings

# The partition dimensions every dataset is stored by (one file per tenant × day).
TENANT_DIMENSION = "tenant"
DATE_DIMENSION = "date"
# Metadata keys of what was written: the check compares the published file against them.
ROWS_KEY = "dagster/row_count"
SHA256_KEY = "content_sha256"
# A run's staged files older than this are a killed run's (TAGFLOW_TEMP_MAX_AGE_S).
DEFAULT_TEMP_MAX_AGE_S = Settings().temp_max_age_s


def tenant_and_day(partition_key: str | dg.MultiPartitionKey) -> tuple[str, date]:
    """Split a tenant × date partition key into its tenant and day."""
    if not isinstance(partition_key, dg.MultiPartitionKey):
        raise dg.DagsterInvariantViolationError(
            f"expected a tenant × date partition key, got {partition_key!r}"
        )
    keys = partition_key.keys_by_dimension
    return keys[TENANT_DIMENSION], date.fromisoformat(keys[DATE_DIMENSION])


def column_schema(dataset: str) -> dg.TableSchema:
    """The dataset's Arrow schema as Dagster's column schema (the catalog's Columns tab),
    each column described as the registry describes it."""
    entry = registered(dataset)
    return dg.TableSchema(
        columns=[
            dg.TableColumn(field.name, str(field.type), entry.column_description(field.name))
            for field in entry.schema
        ]
    )


def published_metadata(staged: StagedPartition) -> dict[str, Any]:
    """What a materialisation records of one published partition."""
    return {
        ROWS_KEY: staged.rows,
        "dagster/relation_identifier": partition_folder(staged.dataset, staged.tenant, staged.day),
        "bytes": staged.bytes,
        SHA256_KEY: staged.sha256,
        **staged.metadata,
    }


class ParquetDatasetIOManager(dg.ConfigurableIOManager):
    """Publishes `{root}/{asset}/tenant=T/date=D/part-0.parquet` atomically; reads tags back."""

    root: str
    # Seconds unwritten after which a staged temp file is a killed run's leftover (sweeper).
    temp_max_age_s: int = DEFAULT_TEMP_MAX_AGE_S

    def store(self) -> DatasetStore:
        return DatasetStore(self.root)

    def sweep_stale_temp_files(self, tenant: str) -> SweepReport:
        """Remove `tenant`'s staged files that killed runs left (see sweeper)."""
        return sweep_stale_temp_files(self.store(), self.temp_max_age_s, tenant)

    def handle_output(self, context: dg.OutputContext, obj: list[StagedPartition]) -> None:
        dataset = context.asset_key.path[-1]
        expected = {tenant_and_day(key) for key in context.asset_partition_keys}
        published: dict[tuple[str, date | None], dict[str, Any]] = {}
        for staged in obj:
            key = (staged.tenant, staged.day)
            tenant_of_run = any(tenant == staged.tenant for tenant, _ in expected)
            if staged.dataset != dataset or not tenant_of_run:
                raise dg.DagsterInvariantViolationError(
                    f"{dataset}: output for {key} is not one of this run's partitions"
                )
            if staged.day is not None and key not in expected:
                raise dg.DagsterInvariantViolationError(
                    f"{dataset}: output for {key} is not one of this run's partitions"
                )
            staged.publish()
            published[key] = published_metadata(staged)
        if registered(dataset).dated and expected - published.keys():
            missing = len(expected - published.keys())
            raise TagflowError(f"{dataset}: no output for {missing} partition(s) of the run")
        context.add_output_metadata(
            {**_run_metadata(published), "dagster/column_schema": column_schema(dataset)}
        )

    def load_input(self, context: dg.InputContext) -> pa.Table:
        raise dg.DagsterInvariantViolationError(
            "tagflow's datasets are read through the dataset store, not loaded as inputs"
        )


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
