"""Backfills submitted to the Dagster instance: its backfill daemon (in `dagster dev` or
`dagster-daemon run`) launches them as range runs under the assets' backfill policy, and the
UI shows them with their runs, checks and reruns."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from datetime import date

import dagster as dg

from tagflow.assets.partitions import TENANT_DIMENSION, tenant_day_key
from tagflow.assets.resources import source_database
from tagflow.cli.runs import days_in_range
from tagflow.names import validate_tenant_name
from tagflow.pipelines.dagster_internals import (
    BACKFILL_ID_TAG,
    BULK_ACTION_TERMINAL_STATUSES,
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


@dataclass(frozen=True)
class BackfillState:
    status: str
    days_done: int
    days_total: int
    runs: int
    finished: bool
    succeeded: bool


def submit_backfill(
    tenant: str, start: date, end: date, instance: dg.DagsterInstance, settings: Settings
) -> str:
    """Ask the instance's backfill daemon to materialise every asset for `tenant` on each day
    of [start, end); return the backfill id. The daemon's code location reads its own
    TAGFLOW_SOURCE_URL and TAGFLOW_STORE."""
    validate_tenant_name(tenant)
    days = days_in_range(start, end, settings.start_date)
    asset_graph = _asset_graph(settings)
    # UnknownTenant or duplicate tag names now, not in the daemon
    source_database(settings).reader().read_tags(tenant)
    if not instance.has_dynamic_partition(TENANT_DIMENSION, tenant):
        instance.add_dynamic_partitions(TENANT_DIMENSION, [tenant])
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=asset_graph,
        partition_names=[str(tenant_day_key(tenant, day.isoformat())) for day in days],
        asset_selection=sorted(asset_graph.materializable_asset_keys),
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


def backfill_state(
    instance: dg.DagsterInstance, backfill_id: str, settings: Settings
) -> BackfillState:
    """Where a submitted backfill stands: days fully materialised, runs launched, status."""
    backfill = instance.get_backfill(backfill_id)
    if backfill is None:
        raise KeyError(backfill_id)
    data = backfill.get_asset_backfill_data(_asset_graph(settings))
    done, total = (
        len(subset.get_partitions_subset(LAST_ASSET)) if LAST_ASSET in subset.asset_keys else 0
        for subset in (data.materialized_subset, data.target_subset)
    )
    runs = instance.get_runs_count(filters=dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))
    return BackfillState(
        status=backfill.status.value,
        days_done=done,
        days_total=total,
        runs=runs,
        finished=backfill.status in BULK_ACTION_TERMINAL_STATUSES,
        succeeded=backfill.status
        in (BulkActionStatus.COMPLETED_SUCCESS, BulkActionStatus.COMPLETED),
    )


@functools.cache
def _asset_graph(settings: Settings) -> BaseAssetGraph:
    """The assets and their partitions (resources play no part): built once, not per poll."""
    return build_definitions(settings).resolve_asset_graph()


def backfill_daemon_running(instance: dg.DagsterInstance) -> bool:
    """Whether a backfill daemon has reported to this instance within DAEMON_STALE_S."""
    heartbeat = instance.get_daemon_heartbeats().get("BACKFILL")
    return heartbeat is not None and time.time() - heartbeat.timestamp < DAEMON_STALE_S
