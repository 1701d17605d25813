"""Partitions shared by every tagflow asset: tenant (dynamic) × UTC day."""

from __future__ import annotations

import os

import dagster as dg

TENANT_DIMENSION = "tenant"
DATE_DIMENSION = "date"

# The first day that can be materialised; a deployment with older history sets it lower.
START_DATE = os.environ.get("TAGFLOW_START_DATE", "2020-01-01")

tenants = dg.DynamicPartitionsDefinition(name=TENANT_DIMENSION)
days = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC")
tenant_days = dg.MultiPartitionsDefinition({TENANT_DIMENSION: tenants, DATE_DIMENSION: days})


def tenant_day_key(tenant: str, day: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({TENANT_DIMENSION: tenant, DATE_DIMENSION: day})
