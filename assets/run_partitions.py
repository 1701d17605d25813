"""The tenant-day partitions an asset or check is running for."""

from datetime import date

import dagster as dg

from io_managers.parquet_io_manager import tenant_and_day
from pipelines.partitions import tenant_days


def run_days(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
) -> list[tuple[str, date]]:
    """The (tenant, day) partitions of this run in day order: one, or a backfill's range."""
    keys = [tenant_days.get_partition_key_from_str(key) for key in context.partition_keys]
    return sorted(tenant_and_day(key) for key in keys)
