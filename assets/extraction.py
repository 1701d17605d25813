"""Assets read from the source: the tag list, and each day's resolved transitions + carry-in."""

from collections.abc import Iterator

import dagster as dg
import pyarrow as pa

from tagflow.assets.partitions import TenantDays
from tagflow.assets.resources import SourceDatabase
from tagflow.io_managers.parquet_io_manager import DayOutput
from tagflow.schemas.registry import DATASETS
from tagflow.source.day_stream import resolved_day_chunks
from tagflow.time_range import day_bounds
from tagflow.transforms.transitions import carry_in_for_day

OWNERS = ["team:tagflow"]
SOURCE_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL)


def extraction_assets(partitions: TenantDays) -> list[dg.AssetsDefinition]:
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

    @dg.multi_asset(
        outs={
            name: dg.AssetOut(
                io_manager_key="datasets",
                kinds={"parquet"},
                owners=OWNERS,
                description=DATASETS[name].description,
            )
            for name in ("transitions", "carry_in")
        },
        partitions_def=partitions.definition,
        backfill_policy=partitions.backfill_policy,
        group_name="extract",
        retry_policy=SOURCE_RETRY,
        pool="source_db",
    )
    def transitions(context: dg.AssetExecutionContext, source: SourceDatabase, tags: pa.Table):
        days = partitions.run_days(context)
        # Fingerprints first: a row landing during the read then makes the next check see a
        # change (a harmless rerun); taken after, such a row could be missed for good.
        fingerprints = {(t, d): source.day_fingerprint(t, *day_bounds(d)) for t, d in days}
        carry_ins: list[DayOutput] = []

        def outputs() -> Iterator[DayOutput]:
            for tenant, day in days:
                day_start, day_end = day_bounds(day)
                raw_carry_in = source.read_carry_in(tenant, day_start)
                carry_ins.append(
                    DayOutput(tenant, day, carry_in_for_day(raw_carry_in, tags, day_start))
                )
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

        # The data version is what the late-data sensor compares with a fresh fingerprint.
        # Dagster records one version per output, so a range run records none: its days that
        # fall in the sensor's lookback are re-fingerprinted and rerun once, as single days.
        single = next(iter(fingerprints.values())) if len(fingerprints) == 1 else None
        yield dg.Output(
            outputs(),
            output_name="transitions",
            data_version=dg.DataVersion(single.version) if single else None,
        )
        yield dg.Output(carry_ins, output_name="carry_in")

    return [tags, transitions]
