"""Assets read from the source: the tag list, and each day's resolved transitions + carry-in."""

from collections.abc import Iterator

import dagster as dg
import pyarrow as pa

from tagflow.assets.partitions import BACKFILL_POLICY, run_days, tenant_days
from tagflow.assets.resources import SourceDatabase
from tagflow.io_managers.parquet_io_manager import DayOutput
from tagflow.source.day_stream import resolved_day_chunks
from tagflow.time_range import day_bounds
from tagflow.transforms.transitions import carry_in_for_day

OWNERS = ["team:tagflow"]
SOURCE_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL)


@dg.asset(
    partitions_def=tenant_days,
    backfill_policy=BACKFILL_POLICY,
    io_manager_key="datasets",
    group_name="extract",
    kinds={"postgres", "parquet"},
    owners=OWNERS,
    retry_policy=SOURCE_RETRY,
    pool="source_db",
)
def tags(context: dg.AssetExecutionContext, source: SourceDatabase) -> pa.Table:
    """The tenant's tags (tag_names) as of extraction: id, name, birth, death and whether the tag
    has numeric rows, string rows or both in its whole history. One file per tenant, refreshed
    by every run."""
    ((tenant, _), *_) = run_days(context)
    # Every dataset is sorted by tag name (codepoint order) for readers' row-group pruning.
    return source.read_tags(tenant).sort_by("tag_name")


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
    backfill_policy=BACKFILL_POLICY,
    group_name="extract",
    retry_policy=SOURCE_RETRY,
    pool="source_db",
)
def transitions(context: dg.AssetExecutionContext, source: SourceDatabase, tags: pa.Table):
    days = run_days(context)
    # Fingerprints first: a row landing during the read then makes the next check see a
    # change (a harmless rerun); taken after, such a row could be missed for good.
    fingerprints = {(t, d): source.day_fingerprint(t, *day_bounds(d)) for t, d in days}
    carry_ins: list[DayOutput] = []

    def outputs() -> Iterator[DayOutput]:
        for tenant, day in days:
            day_start, day_end = day_bounds(day)
            carry_in = carry_in_for_day(source.read_carry_in(tenant, day_start), tags, day_start)
            carry_ins.append(DayOutput(tenant, day, carry_in))
            source_rows = fingerprints[tenant, day].rows
            output = DayOutput(tenant, day, [], metadata={"source_rows": source_rows})
            output.data = resolved_day_chunks(
                source.tenant_url(tenant),
                tenant,
                tags,
                day_start,
                day_end,
                source_rows,
                output.metadata,
            )
            yield output

    # The data version is what the late-data sensor compares with a fresh fingerprint. Dagster
    # records one version per output, so a range run records none: its days that fall in the
    # sensor's lookback are re-fingerprinted and rerun once, as single days.
    single = next(iter(fingerprints.values())) if len(fingerprints) == 1 else None
    yield dg.Output(
        outputs(),
        output_name="transitions",
        data_version=dg.DataVersion(single.version) if single else None,
    )
    yield dg.Output(carry_ins, output_name="carry_in")
