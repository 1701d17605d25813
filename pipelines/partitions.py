"""Partitions shared by every tagflow asset: tenant (dynamic) × UTC day."""

from __future__ import annotations

import os
import warnings

import dagster as dg

TENANT_DIMENSION = "tenant"
DATE_DIMENSION = "date"

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
