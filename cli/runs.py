"""Running the tagflow assets for a tenant and a range of days through Dagster, in process."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from tagflow.assets.partitions import TENANT_DIMENSION, tenant_day_key, tenant_month_key
from tagflow.assets.resources import source_database
from tagflow.cli.failures import RunFailure, run_failure
from tagflow.daystep.derived import deployment_definitions, derived_plan
from tagflow.errors import InvalidArgument, InvalidTimeRange
from tagflow.names import validate_tenant_name
from tagflow.pipelines.dagster_internals import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from tagflow.pipelines.definitions import build_definitions
from tagflow.settings import Settings

# Runs are recorded in the instance (and the UI) with their stack traces; the terminal shows
# tagflow's own lines only, or Dagster's events too with --verbose.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
VERBOSE_CONSOLE = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
# Runs launched here record where they run, so a later command can tell a killed run (its
# process gone) from one still running.
HOST_TAG = "tagflow/host"
PID_TAG = "tagflow/pid"
# Ranges longer than this are a backfill's job, not one command's.
MAX_DAYS = 3660


@dataclass(frozen=True)
class PartitionRun:
    """One Dagster run: a tenant-day, or a range of a tenant's days (each its own file)."""

    tenant: str
    days: tuple[date, ...]
    run_id: str
    success: bool
    # Why it failed (None when it succeeded).
    failure: RunFailure | None = None

    @property
    def day(self) -> date:
        """The run's first day."""
        return self.days[0]

    @property
    def interrupted(self) -> bool:
        """Whether Ctrl-C stopped the run."""
        return self.failure is not None and self.failure.interrupted


class Interrupted(Exception):
    """Ctrl-C while in-process runs went on: no further run was started; `runs` are those that
    ended (the interrupted one last, failed, nothing of it published)."""

    def __init__(self, runs: list[PartitionRun]) -> None:
        super().__init__("interrupted")
        self.runs = runs


def days_in_range(
    start: date, end: date, first_day: date, end_day: date | None = None
) -> list[date]:
    """The days of [start, end): end is exclusive; none before the first partition day, none
    from `end_day` (the partitions' exclusive end, when set), none that has not ended yet
    (UTC)."""
    if not isinstance(start, date) or not isinstance(end, date):
        raise InvalidTimeRange("start and end must be dates (YYYY-MM-DD)")
    if end <= start:
        raise InvalidTimeRange(f"end {end} must be after start {start} (end is exclusive)")
    if start < first_day:
        raise InvalidTimeRange(
            f"{start} is before the partitions' first day, {first_day} (TAGFLOW_START_DATE)"
        )
    if end_day is not None and end > end_day:
        raise InvalidTimeRange(
            f"{max(start, end_day)} is after the partitions' last day, "
            f"{end_day - timedelta(days=1)} (TAGFLOW_END_DATE is {end_day}, exclusive)"
        )
    today = datetime.now(UTC).date()
    if end > today:
        raise InvalidTimeRange(
            f"{max(start, today)} has not ended; the last complete day is "
            f"{today - timedelta(days=1)}"
        )
    if (end - start).days > MAX_DAYS:
        raise InvalidTimeRange(f"at most {MAX_DAYS} days per call")
    return [start + timedelta(days=n) for n in range((end - start).days)]


def _process_tags() -> dict[str, str]:
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the in-process runs of this host whose process is gone (killed), and give
    back the pool slots their steps held; return their run ids.

    A run killed with SIGKILL never reports its end: it stays STARTED and keeps its
    `source_db` slots, and once the pool's slots are all held, every later run waits forever.
    """
    unfinished = instance.get_runs(
        filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING],
            tags={HOST_TAG: socket.gethostname()},
        )
    )
    reaped = []
    for run in unfinished:
        pid = run.tags.get(PID_TAG, "")
        if not pid.isdigit() or int(pid) == os.getpid() or _process_alive(int(pid)):
            continue
        instance.report_run_failed(run, message="the process running it was killed")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        reaped.append(run.run_id)
    return reaped


def materialize_days(
    tenant: str,
    start: date,
    end: date,
    instance: dg.DagsterInstance,
    settings: Settings,
    on_partition_done: Callable[[PartitionRun], None] | None = None,
    days_per_run: int = 1,
    verbose: bool = False,
) -> list[PartitionRun]:
    """Materialise every asset (and run every check) for `tenant` on each day of [start, end),
    in Dagster runs recorded in `instance` of up to `days_per_run` consecutive days each (a
    range run writes each day's files as it goes and holds one day at a time).

    A run that fails for a reason every later day shares (the source unreachable or refusing,
    schema drift, bad data) ends the series: no further run is started, and the days not run
    are those of no returned run. Ctrl-C raises Interrupted once the run it fell in ended."""
    validate_tenant_name(tenant)
    days = days_in_range(start, end, settings.start_date, settings.end_date)
    if not isinstance(days_per_run, int) or days_per_run < 1:
        raise InvalidArgument("days per run must be a positive whole number")
    definitions = build_definitions(settings)
    # UnknownTenant, duplicate tag names or a derived tag reading an unknown tag now, before
    # any run starts
    tags = source_database(settings).reader().read_tags(tenant)
    derived_plan(deployment_definitions(settings).for_tenant(tenant), tags)
    if not instance.has_dynamic_partition(TENANT_DIMENSION, tenant):
        instance.add_dynamic_partitions(TENANT_DIMENSION, [tenant])
    reap_orphaned_runs(instance)
    job = definitions.resolve_job_def("all_assets")
    groups = [days[at : at + days_per_run] for at in range(0, len(days), days_per_run)]
    runs: list[PartitionRun] = []
    try:
        for run in _run_each(job, tenant, groups, instance, verbose):
            runs.append(run)
            if on_partition_done is not None:
                on_partition_done(run)
            if run.interrupted:
                raise Interrupted(runs)
            if run.failure is not None and run.failure.stops:
                break
    except KeyboardInterrupt:
        # Between two runs: Dagster only catches Ctrl-C while a run executes.
        raise Interrupted(runs) from None
    return runs


def _run_each(
    job: dg.JobDefinition,
    tenant: str,
    groups: list[list[date]],
    instance: dg.DagsterInstance,
    verbose: bool,
) -> Iterator[PartitionRun]:
    for group in groups:
        first, last = (tenant_day_key(tenant, day.isoformat()) for day in (group[0], group[-1]))
        tags, partition_key = _process_tags(), None
        if len(group) == 1:
            partition_key = first
        else:
            # Range tags make one run cover the days (the assets' backfill policy allows it);
            # Dagster's own backfills tag their runs the same way.
            tags[ASSET_PARTITION_RANGE_START_TAG] = str(first)
            tags[ASSET_PARTITION_RANGE_END_TAG] = str(last)
        result = job.execute_in_process(
            partition_key=partition_key,
            instance=instance,
            run_config=VERBOSE_CONSOLE if verbose else QUIET_CONSOLE,
            raise_on_error=False,
            tags=tags,
        )
        failure = None if result.success else run_failure(instance, result.run_id)
        yield PartitionRun(tenant, tuple(group), result.run_id, result.success, failure)


def next_month(month: date) -> date:
    """The first day of the month after `month`'s."""
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


def closed_months(days: list[date], today: date) -> list[date]:
    """The first days of the months of `days` that ended before `today`."""
    months = sorted({day.replace(day=1) for day in days})
    return [month for month in months if next_month(month) <= today]


def copy_months(
    tenant: str,
    months: list[date],
    instance: dg.DagsterInstance,
    settings: Settings,
    verbose: bool = False,
    on_run: Callable[[PartitionRun], None] | None = None,
) -> list[PartitionRun]:
    """Make the read API's month copies of `tenant` for `months` (first days), one Dagster run
    per month, recorded in `instance`; each run is passed to `on_run` as it ends. No run
    starts after one Ctrl-C stopped."""
    validate_tenant_name(tenant)
    job = build_definitions(settings).resolve_job_def("month_copies")
    if not instance.has_dynamic_partition(TENANT_DIMENSION, tenant):
        instance.add_dynamic_partitions(TENANT_DIMENSION, [tenant])
    runs = []
    for month in months:
        result = job.execute_in_process(
            partition_key=tenant_month_key(tenant, month),
            instance=instance,
            run_config=VERBOSE_CONSOLE if verbose else QUIET_CONSOLE,
            raise_on_error=False,
            tags=_process_tags(),
        )
        failure = None if result.success else run_failure(instance, result.run_id)
        runs.append(PartitionRun(tenant, (month,), result.run_id, result.success, failure))
        if on_run is not None:
            on_run(runs[-1])
        if runs[-1].interrupted:
            break
    return runs
