"""The partitions every tagflow asset shares, tenant (dynamic) × UTC day, and the range backfill
policy; both follow the deployment's settings (first day, days per backfill run)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property

import dagster as dg

from tagflow.io_managers.parquet_io_manager import DATE_DIMENSION, TENANT_DIMENSION, tenant_and_day
from tagflow.settings import Settings

tenants = dg.DynamicPartitionsDefinition(name=TENANT_DIMENSION)

# Range backfills are what make long histories practical; the parameter is marked beta.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)


@dataclass(frozen=True)
class TenantDays:
    """Tenant × day partitions from `start_date` (to the day before `end_date` if given, else to
    yesterday); a backfill runs up to `days_per_run` tenant-days in one run (each day still its
    own files), so a year is a dozen runs for the daemon to launch, not 365."""

    start_date: date
    days_per_run: int
    end_date: date | None = None

    @classmethod
    def of(cls, settings: Settings) -> TenantDays:
        return cls(settings.start_date, settings.backfill_days_per_run, settings.end_date)

    @cached_property
    def definition(self) -> dg.MultiPartitionsDefinition:
        days = dg.DailyPartitionsDefinition(
            start_date=self.start_date.isoformat(),
            end_date=self.end_date.isoformat() if self.end_date else None,
            timezone="UTC",
        )
        return dg.MultiPartitionsDefinition({TENANT_DIMENSION: tenants, DATE_DIMENSION: days})

    @property
    def backfill_policy(self) -> dg.BackfillPolicy:
        return dg.BackfillPolicy.multi_run(max_partitions_per_run=self.days_per_run)

    def run_days(
        self, context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext
    ) -> list[tuple[str, date]]:
        """The (tenant, day) partitions of this run in day order: one, or a backfill's range."""
        keys = context.partition_keys
        return sorted(tenant_and_day(self.definition.get_partition_key_from_str(k)) for k in keys)


MONTH_DIMENSION = "month"


@dataclass(frozen=True)
class TenantMonths:
    """Tenant × month partitions of the read API's month copies, each mapped to the tenant's
    days of that month."""

    start_date: date
    end_date: date | None = None

    @classmethod
    def of(cls, settings: Settings) -> TenantMonths:
        return cls(settings.start_date, settings.end_date)

    @cached_property
    def definition(self) -> dg.MultiPartitionsDefinition:
        first = self.start_date.replace(day=1).isoformat()
        # through the month of the last day
        end = None
        if self.end_date is not None:
            last = self.end_date - timedelta(days=1)
            end = (last.replace(day=28) + timedelta(days=4)).replace(day=1).isoformat()
        months = dg.MonthlyPartitionsDefinition(start_date=first, end_date=end, timezone="UTC")
        return dg.MultiPartitionsDefinition({TENANT_DIMENSION: tenants, MONTH_DIMENSION: months})

    @property
    def from_days(self) -> dg.MultiPartitionMapping:
        # A copy depends on its tenant's days of its month: Dagster's mapping between two
        # multi-dimensional partitionings is marked beta.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.BetaWarning)
            return self._from_days()

    def _from_days(self) -> dg.MultiPartitionMapping:
        return dg.MultiPartitionMapping(
            {
                TENANT_DIMENSION: dg.DimensionPartitionMapping(
                    TENANT_DIMENSION, dg.IdentityPartitionMapping()
                ),
                DATE_DIMENSION: dg.DimensionPartitionMapping(
                    MONTH_DIMENSION, dg.TimeWindowPartitionMapping()
                ),
            }
        )

    def run_months(self, context: dg.AssetExecutionContext) -> list[tuple[str, date]]:
        """The (tenant, first day of month) partitions of this run."""
        out = []
        for key in context.partition_keys:
            keys = self.definition.get_partition_key_from_str(key).keys_by_dimension
            out.append((keys[TENANT_DIMENSION], date.fromisoformat(keys[MONTH_DIMENSION])))
        return sorted(out)


def tenant_month_key(tenant: str, month: date) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({TENANT_DIMENSION: tenant, MONTH_DIMENSION: month.isoformat()})


def tenant_day_key(tenant: str, day: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({TENANT_DIMENSION: tenant, DATE_DIMENSION: day})
