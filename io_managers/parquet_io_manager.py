"""Dagster IO manager that stores each tenant × day partition of an asset as one Parquet file.

Assets return Arrow tables; downstream assets receive their partition, or a range of
partitions concatenated, as one Arrow table. Paths come only from DatasetStore.
"""

from __future__ import annotations

from datetime import date

import dagster as dg
import pyarrow as pa

from io_managers.dataset_store import DatasetStore


def tenant_and_day(partition_key: str | dg.MultiPartitionKey) -> tuple[str, date]:
    """Split a tenant × date partition key into its tenant and day."""
    if not isinstance(partition_key, dg.MultiPartitionKey):
        raise dg.DagsterInvariantViolationError(
            f"expected a tenant × date partition key, got {partition_key!r}"
        )
    keys = partition_key.keys_by_dimension
    return keys["tenant"], date.fromisoformat(keys["date"])


class ParquetDatasetIOManager(dg.ConfigurableIOManager):
    """Writes `{root}/{asset}/tenant=T/date=D/part-0.parquet` atomically; reads partitions back."""

    root: str

    def store(self) -> DatasetStore:
        return DatasetStore(self.root)

    def handle_output(self, context: dg.OutputContext, obj: pa.Table | None) -> None:
        if obj is None:
            return
        dataset = context.asset_key.path[-1]
        tenant, day = tenant_and_day(context.partition_key)
        written = self.store().write(dataset, tenant, day, obj)
        context.add_output_metadata({"bytes": dg.MetadataValue.int(written)})

    def load_input(self, context: dg.InputContext) -> pa.Table:
        dataset = context.asset_key.path[-1]
        store = self.store()
        keys = [tenant_and_day(key) for key in context.asset_partition_keys]
        tenants = {tenant for tenant, _ in keys}
        if len(tenants) != 1:
            raise dg.DagsterInvariantViolationError("an input must cover exactly one tenant")
        (tenant,) = tenants
        if dataset == "tags":
            return store.read(dataset, tenant)
        return store.read_days(dataset, tenant, [day for _, day in keys])
