"""Partitions shared by every tagflow asset: tenant (dynamic) × UTC day."""

from __future__ import annotations

import os
import warnings
from datetime import date

import dagster as dg

from tagflow.io_managers.parquet_io_manager import DATE_DIMENSION, TENANT_DIMENSION, tenant_and_day

# The first day that can be materialised; a deployment with older history sets it lower.
START_DATE = os.environ.get("TAGFLOW_START_DATE", "2020-01-01")

tenants = dg.DynamicPartitionsDefinition(name=TENANT_DIMENSION)
days = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC")
tenant_days = dg.MultiPartitionsDefinition({TENANT_DIMENSION: tenants, DATE_DIMENSION: days})


# A backfill runs up to this many tenant-days in one run (each day still its own file), so
# a year is a dozen runs for the daemon to launch, not 365.
MAX_DAYS_PER_RUN = int(os.environ.get("TAGFLOW_BACKFILL_DAYS_PER_RUN", "31"))
BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_DAYS_PER_RUN)
# Range backfills are what make long histories practical; the parameter is marked beta.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)


def tenant_day_key(tenant: str, day: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({TENANT_DIMENSION: tenant, DATE_DIMENSION: day})


def run_days(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
) -> list[tuple[str, date]]:
    """The (tenant, day) partitions of this run in day order: one, or a backfill's range."""
    keys = [tenant_days.get_partition_key_from_str(key) for key in context.partition_keys]
    return sorted(tenant_and_day(key) for key in keys)
