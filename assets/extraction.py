"""The tag list, read from the source: the one asset every tenant-day's datasets start from."""

import dagster as dg
import pyarrow as pa

from tagflow.assets.partitions import TenantDays
from tagflow.assets.resources import SourceDatabase
from tagflow.schemas.registry import DATASETS

OWNERS = ["team:tagflow"]
SOURCE_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL)


def tags_asset(partitions: TenantDays) -> dg.AssetsDefinition:
    @dg.asset(
        partitions_def=partitions.definition,
        backfill_policy=partitions.backfill_policy,
        io_manager_key="datasets",
        group_name="extract",
        kinds={"postgres", "parquet"},
        owners=OWNERS,
        retry_policy=SOURCE_RETRY,
        pool="source_db",
        description=DATASETS["tags"].description,
    )
    def tags(context: dg.AssetExecutionContext, source: SourceDatabase) -> pa.Table:
        ((tenant, _), *_) = partitions.run_days(context)
        # Every dataset is sorted by tag name (codepoint order) for readers' row-group pruning.
        return source.read_tags(tenant).sort_by("tag_name")

    return tags
