"""Backfills submitted to the Dagster instance: its backfill daemon (in `dagster dev` or
`dagster-daemon run`) launches them as range runs under the assets' backfill policy, and the
UI shows them with their runs, checks and reruns; what they did is read back from the instance
as an in-process backfill reports it (each day's outcome, why a run failed, what to rerun)."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from datetime import date

import dagster as dg

from tagflow.assets.partitions import TENANT_DIMENSION, TenantDays, tenant_day_key
from tagflow.assets.resources import source_database
from tagflow.cli.failures import RunFailure, run_failure
from tagflow.cli.runs import PartitionRun, days_in_range
from tagflow.io_managers.parquet_io_manager import tenant_and_day
from tagflow.names import validate_tenant_name
from tagflow.pipelines.dagster_internals import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
    BULK_ACTION_TERMINAL_STATUSES,
    PARTITION_TAG,
    BaseAssetGraph,
    BulkActionStatus,
    PartitionBackfill,
    make_new_backfill_id,
)
from tagflow.pipelines.definitions import build_definitions
from tagflow.settings import Settings

# The asset every run ends with: a tenant-day is done once it is materialised.
LAST_ASSET = dg.AssetKey("samples_1d")
# A daemon that has not reported for this long is taken as not running.
DAEMON_STALE_S = 120


# A run the operator (or a daemon stopping) cancelled: its days publish nothing more.
CANCELED = RunFailure("canceled", "", "the run was canceled; rerun these days")


@dataclass(frozen=True)
class BackfillState:
    status: str
    days_done: int
    days_failed: int
    days_total: int
    runs: int
    finished: bool
    succeeded: bool


@dataclass(frozen=True)
class BackfillReport:
    """What a backfill did, as the runs it launched recorded it: `tenant` and its `days` (the
    backfill's target), `runs` the finished day runs (the latest run of each day), `other_runs`
    its finished runs of other assets (the month copies of closed months)."""

    backfill_id: str
    tenant: str
    days: list[date]
    runs: list[PartitionRun]
    other_runs: list[tuple[str, PartitionRun]]
    state: BackfillState


def submit_backfill(
    tenant: str, start: date, end: date, instance: dg.DagsterInstance, settings: Settings
) -> str:
    """Ask the instance's backfill daemon to materialise every asset for `tenant` on each day
    of [start, end); return the backfill id. The daemon's code location reads its own
    TAGFLOW_SOURCE_URL and TAGFLOW_STORE."""
    validate_tenant_name(tenant)
    days = days_in_range(start, end, settings.start_date, settings.end_date)
    asset_graph = _asset_graph(settings)
    # UnknownTenant or duplicate tag names now, not in the daemon
    source_database(settings).reader().read_tags(tenant)
    if not instance.has_dynamic_partition(TENANT_DIMENSION, tenant):
        instance.add_dynamic_partitions(TENANT_DIMENSION, [tenant])
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=asset_graph,
        partition_names=[str(tenant_day_key(tenant, day.isoformat())) for day in days],
        asset_selection=_day_and_month_assets(asset_graph),
        backfill_timestamp=time.time(),
        tags={},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=f"tagflow {tenant} {days[0].isoformat()}..{days[-1].isoformat()}",
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


def _day_and_month_assets(asset_graph: BaseAssetGraph) -> list[dg.AssetKey]:
    """The assets a backfill of days materialises: those partitioned by tenant and day, and
    the month copies downstream of them. Dagster refuses a backfill whose root assets are
    partitioned differently, so the span annotations (by tenant alone) are left to their
    sensor."""
    return sorted(
        key
        for key in asset_graph.materializable_asset_keys
        if isinstance(asset_graph.get(key).partitions_def, dg.MultiPartitionsDefinition)
    )


def backfill_state(
    instance: dg.DagsterInstance, backfill_id: str, settings: Settings
) -> BackfillState:
    """Where a submitted backfill stands: days fully materialised, runs launched, status."""
    backfill = instance.get_backfill(backfill_id)
    if backfill is None:
        raise KeyError(backfill_id)
    data = backfill.get_asset_backfill_data(_asset_graph(settings))
    done, failed, total = (
        len(subset.get_partitions_subset(LAST_ASSET)) if LAST_ASSET in subset.asset_keys else 0
        for subset in (
            data.materialized_subset,
            data.failed_and_downstream_subset,
            data.target_subset,
        )
    )
    runs = instance.get_runs_count(filters=dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))
    return BackfillState(
        status=backfill.status.value,
        days_done=done,
        days_failed=failed,
        days_total=total,
        runs=runs,
        finished=backfill.status in BULK_ACTION_TERMINAL_STATUSES,
        succeeded=backfill.status
        in (BulkActionStatus.COMPLETED_SUCCESS, BulkActionStatus.COMPLETED),
    )


def latest_backfill_id(instance: dg.DagsterInstance) -> str | None:
    """The id of the backfill submitted last to this instance, None if there is none."""
    latest = instance.get_backfills(limit=1)
    return latest[0].backfill_id if latest else None


def backfill_report(
    instance: dg.DagsterInstance, backfill_id: str, settings: Settings
) -> BackfillReport:
    """What backfill `backfill_id` did so far: each of its days' latest run, why a failed run
    failed (from its event log, as for an in-process run); days of runs not finished yet have
    none."""
    state = backfill_state(instance, backfill_id, settings)
    backfill = instance.get_backfill(backfill_id)
    assert backfill is not None  # backfill_state found it
    target = backfill.get_asset_backfill_data(_asset_graph(settings)).target_subset
    keys = target.get_partitions_subset(LAST_ASSET).get_partition_keys()
    targeted = sorted(tenant_and_day(_day_key(key, settings)) for key in keys)
    tenant = targeted[0][0] if targeted else ""
    # newest first: the first run met for a day is its latest
    runs = instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))
    days_of: dict[str, list[date]] = {}
    seen: set[date] = set()
    others: list[tuple[str, PartitionRun]] = []
    for run in runs:
        if run.asset_selection is not None and LAST_ASSET not in run.asset_selection:
            if run.is_finished:
                others.append((_what(run), _outcome(instance, run, (), tenant)))
            continue
        for day in set(_run_days(run, settings)) - seen:
            seen.add(day)
            days_of.setdefault(run.run_id, []).append(day)
    by_id = {run.run_id: run for run in runs}
    day_runs = sorted(
        (
            _outcome(instance, by_id[run_id], tuple(sorted(days)), tenant)
            for run_id, days in days_of.items()
            if by_id[run_id].is_finished
        ),
        key=lambda run: run.days[0],
    )
    return BackfillReport(
        backfill_id,
        tenant,
        [day for _, day in targeted],
        day_runs,
        others,
        state,
    )


def _day_key(key: str, settings: Settings) -> dg.MultiPartitionKey:
    return TenantDays.of(settings).definition.get_partition_key_from_str(key)


def _run_days(run: dg.DagsterRun, settings: Settings) -> list[date]:
    """The days a day run covers: its partition, or its range (one tenant's days)."""
    tags = run.tags
    if ASSET_PARTITION_RANGE_START_TAG in tags and ASSET_PARTITION_RANGE_END_TAG in tags:
        first, last = (
            tenant_and_day(_day_key(tags[tag], settings))[1]
            for tag in (ASSET_PARTITION_RANGE_START_TAG, ASSET_PARTITION_RANGE_END_TAG)
        )
        return [date.fromordinal(n) for n in range(first.toordinal(), last.toordinal() + 1)]
    if PARTITION_TAG in tags:
        return [tenant_and_day(_day_key(tags[PARTITION_TAG], settings))[1]]
    return []


def _what(run: dg.DagsterRun) -> str:
    """A run of other assets, named by its partition (a month copy's `2026-03-01|acme`)."""
    key = run.tags.get(PARTITION_TAG) or run.tags.get(ASSET_PARTITION_RANGE_START_TAG, "")
    return f"{key.split('|')[0][:7]} month copy" if key else "run"


def _outcome(
    instance: dg.DagsterInstance, run: dg.DagsterRun, days: tuple[date, ...], tenant: str
) -> PartitionRun:
    success = run.status == dg.DagsterRunStatus.SUCCESS
    failure = None
    if run.status == dg.DagsterRunStatus.CANCELED:
        failure = CANCELED
    elif not success:
        failure = run_failure(instance, run.run_id)
    return PartitionRun(tenant, days, run.run_id, success, failure)


@functools.cache
def _asset_graph(settings: Settings) -> BaseAssetGraph:
    """The assets and their partitions (resources play no part): built once, not per poll."""
    return build_definitions(settings).resolve_asset_graph()


def backfill_daemon_running(instance: dg.DagsterInstance) -> bool:
    """Whether a backfill daemon has reported to this instance within DAEMON_STALE_S."""
    heartbeat = instance.get_daemon_heartbeats().get("BACKFILL")
    return heartbeat is not None and time.time() - heartbeat.timestamp < DAEMON_STALE_S
