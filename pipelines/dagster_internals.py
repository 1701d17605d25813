"""Every piece of Dagster that tagflow uses outside its public API, in one place, with the
versions it was written against (tests/test_private_apis.py fails on a version outside them,
so an upgrade of Dagster starts here).

- The dask executor delegates steps with Dagster's step-delegating executor, which has no
  public form.
- `tagflow backfill` submits a backfill to the daemon and waits for it the way the UI does:
  Dagster offers no public call to create one or read its status.
- The CLI tells a step's own failure from a framework error by the error's source, which
  Dagster records on every step failure but exports no name for.
- The SQLite storage keeps its connections open between events (`sqlite_storage.py`) by
  subclassing Dagster's SQLite storages, which are public classes whose connection methods
  and directory helpers are not.
- The range and backfill tags are the strings Dagster documents for launching range runs and
  marking backfill runs; they are spelled here, not imported from a private module.
"""

from __future__ import annotations

from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.events import DagsterEvent
from dagster._core.execution.backfill import (
    BULK_ACTION_TERMINAL_STATUSES,
    BulkActionStatus,
    PartitionBackfill,
)
from dagster._core.execution.plan.objects import ErrorSource
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.step_delegating import (
    CheckStepHealthResult,
    StepDelegatingExecutor,
    StepHandler,
    StepHandlerContext,
)
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME
from dagster._core.storage.runs import SqliteRunStorage
from dagster._core.storage.schedules import SqliteScheduleStorage
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._core.utils import make_new_backfill_id
from dagster._serdes import ConfigurableClassData

# Where Dagster's SQLite storage keeps runs, event logs and schedules under its base folder.
event_logs_directory = _event_logs_directory
runs_directory = _runs_directory
schedule_directory = _schedule_directory

# The Dagster releases these private names were read from (pyproject pins the same range).
WRITTEN_FOR = (">=1.13", "<1.14")

ASSET_PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
ASSET_PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
BACKFILL_ID_TAG = "dagster/backfill"
# The run's partition key (a tenant-day's `date|tenant`): the one tag a run of one partition
# needs; the per-dimension tags Dagster derives from it (`dagster/partition/date`) are keys
# that its tag rules deprecate when a caller passes them.
PARTITION_TAG = "dagster/partition"

__all__ = [
    "ASSET_PARTITION_RANGE_END_TAG",
    "ASSET_PARTITION_RANGE_START_TAG",
    "BACKFILL_ID_TAG",
    "BULK_ACTION_TERMINAL_STATUSES",
    "BaseAssetGraph",
    "BulkActionStatus",
    "CheckStepHealthResult",
    "ConfigurableClassData",
    "DagsterEvent",
    "DagsterSqliteStorage",
    "INDEX_SHARD_NAME",
    "ErrorSource",
    "PARTITION_TAG",
    "PartitionBackfill",
    "RetryMode",
    "SqliteEventLogStorage",
    "SqliteRunStorage",
    "SqliteScheduleStorage",
    "StepDelegatingExecutor",
    "StepHandler",
    "StepHandlerContext",
    "WRITTEN_FOR",
    "event_logs_directory",
    "make_new_backfill_id",
    "runs_directory",
    "schedule_directory",
]
