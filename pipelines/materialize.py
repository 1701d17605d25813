"""Running the tagflow assets for a tenant and a range of days through Dagster, in process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg

from pipelines.definitions import build_definitions
from pipelines.partitions import START_DATE, TENANT_DIMENSION, tenant_day_key
from pipelines.resources import source_database
from tagflow.errors import InvalidTimeRange
from tagflow.names import validate_tenant_name

# Runs are recorded in the instance (and the UI); the terminal shows only warnings and worse.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# Ranges longer than this are a backfill's job, not one command's.
MAX_DAYS = 3660


@dataclass(frozen=True)
class PartitionRun:
    tenant: str
    day: date
    run_id: str
    success: bool


def days_in_range(start: date, end: date) -> list[date]:
    """The days of [start, end): end is exclusive."""
    if not isinstance(start, date) or not isinstance(end, date):
        raise InvalidTimeRange("start and end must be dates (YYYY-MM-DD)")
    if end <= start:
        raise InvalidTimeRange(f"end {end} must be after start {start} (end is exclusive)")
    if start < date.fromisoformat(START_DATE):
        raise InvalidTimeRange(f"start {start} is before the first partition day {START_DATE}")
    if (end - start).days > MAX_DAYS:
        raise InvalidTimeRange(f"at most {MAX_DAYS} days per call")
    return [start + timedelta(days=n) for n in range((end - start).days)]


def materialize_days(
    tenant: str,
    start: date,
    end: date,
    instance: dg.DagsterInstance,
    source_url: str | None = None,
    store_root: str | None = None,
    on_partition_done: Callable[[PartitionRun], None] | None = None,
) -> list[PartitionRun]:
    """Materialise every asset (and run every check) for `tenant` on each day of [start, end),
    one Dagster run per tenant-day recorded in `instance`."""
    validate_tenant_name(tenant)
    days = days_in_range(start, end)
    source_database(source_url).read_tags(tenant)  # UnknownTenant before any run starts
    if not instance.has_dynamic_partition(TENANT_DIMENSION, tenant):
        instance.add_dynamic_partitions(TENANT_DIMENSION, [tenant])
    job = build_definitions(source_url, store_root).resolve_implicit_global_asset_job_def()
    runs = []
    for run in _run_each(job, tenant, days, instance):
        runs.append(run)
        if on_partition_done is not None:
            on_partition_done(run)
    return runs


def _run_each(
    job: dg.JobDefinition, tenant: str, days: list[date], instance: dg.DagsterInstance
) -> Iterator[PartitionRun]:
    for day in days:
        result = job.execute_in_process(
            partition_key=tenant_day_key(tenant, day.isoformat()),
            instance=instance,
            run_config=QUIET_CONSOLE,
            raise_on_error=False,
        )
        yield PartitionRun(tenant, day, result.run_id, result.success)
