"""Assets read from the source: the tag list, and each day's resolved transitions + carry-in."""

import dagster as dg
import pyarrow as pa

from assets.metadata import partition_of, stopwatch, table_metadata
from pipelines.partitions import tenant_days
from pipelines.resources import SourceDatabase
from tagflow.time_ranges import day_bounds
from transforms.transitions import carry_in_for_day, resolve_rows

OWNERS = ["team:tagflow"]
SOURCE_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL)


@dg.asset(
    partitions_def=tenant_days,
    io_manager_key="datasets",
    group_name="extract",
    kinds={"postgres", "parquet"},
    owners=OWNERS,
    retry_policy=SOURCE_RETRY,
    pool="source_db",
)
def tags(context: dg.AssetExecutionContext, source: SourceDatabase) -> dg.Output[pa.Table]:
    """The tenant's tags (tag_names) as of extraction: id, name, birth, death and whether the tag
    has numeric rows, string rows or both in its whole history. One file per tenant, refreshed
    by every day's run."""
    tenant, _ = partition_of(context)
    with stopwatch() as took:
        # Every dataset is sorted by tag name (codepoint order) for readers' row-group pruning.
        table = source.read_tags(tenant).sort_by("tag_name")
    return dg.Output(table, metadata={**table_metadata(table, None), "seconds": took["seconds"]})


@dg.multi_asset(
    outs={
        "transitions": dg.AssetOut(
            io_manager_key="datasets",
            kinds={"parquet"},
            owners=OWNERS,
            description="Every kept source row of the day (both tables merged), one per tag and "
            "instant after resolving duplicates, sorted by tag name and time.",
        ),
        "carry_in": dg.AssetOut(
            io_manager_key="datasets",
            kinds={"parquet"},
            owners=OWNERS,
            description="Per tag still alive at midnight, the last row before the day and the "
            "time its run of equal values began: what spans and samples hold at 00:00.",
        ),
    },
    partitions_def=tenant_days,
    group_name="extract",
    retry_policy=SOURCE_RETRY,
    pool="source_db",
)
def transitions(context: dg.AssetExecutionContext, source: SourceDatabase, tags: pa.Table):
    tenant, day = partition_of(context)
    day_start, day_end = day_bounds(day)
    # Fingerprint first: a row landing during the read then makes the next check see a
    # change (a harmless rerun); taken after, such a row could be missed for good.
    fingerprint = source.day_fingerprint(tenant, day_start, day_end)
    with stopwatch() as took:
        raw_rows = source.read_day_rows(tenant, day_start, day_end)
        raw_carry_in = source.read_carry_in(tenant, day_start)
        kept, stats = resolve_rows(raw_rows, tags)
        carry_in = carry_in_for_day(raw_carry_in, tags, day_start)
    yield dg.Output(
        kept,
        output_name="transitions",
        data_version=dg.DataVersion(fingerprint.version),
        metadata={
            "source_rows": dg.MetadataValue.int(fingerprint.rows),
            **table_metadata(kept, "time"),
            "rows_in": dg.MetadataValue.int(stats["rows_in"]),
            "duplicates_dropped": dg.MetadataValue.int(stats["duplicates_dropped"]),
            "orphans_skipped": dg.MetadataValue.int(stats["orphans_skipped"]),
            "seconds": took["seconds"],
        },
    )
    yield dg.Output(carry_in, output_name="carry_in", metadata=table_metadata(carry_in, "time"))
