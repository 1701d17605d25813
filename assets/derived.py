"""Assets derived from a day's transitions: spans and LOCF-resampled metrics at 1m, 1h, 1d."""

from collections.abc import Iterator
from datetime import timedelta

import dagster as dg
import pyarrow as pa

from tagflow.assets.extraction import OWNERS
from tagflow.assets.partitions import BACKFILL_POLICY, run_days, tenant_days
from tagflow.io_managers.parquet_io_manager import DayOutput, StoredDays
from tagflow.schemas.arrow import SAMPLES, SAMPLES_STR
from tagflow.time_range import day_bounds
from tagflow.transforms.chunks import rollup_by_chunk, samples_by_chunk, spans_by_chunk

SPANS_DOC = (
    "Periods of constant value (runs) of every tag intersecting the day: raw_begin_at/raw_end_at "
    "are the run's true start and end (raw_end_at null if the run has not ended before "
    "midnight), begin_at/end_at the run clipped to the day; id is stable across days and reruns."
)
NUMERIC_DOC = (
    "Per numeric tag and {width} bucket, last-observation-carried-forward statistics over the "
    "time the tag held a finite number: time-weighted average, covered seconds, min, max, first, "
    "last, and the count of transitions in the bucket."
)
STRING_DOC = (
    "Per string tag and {width} bucket: covered seconds (a non-null string held), first, last, "
    "the string held longest (mode; ties to the smallest), seconds held per string, and the count "
    "of transitions in the bucket."
)


@dg.asset(
    partitions_def=tenant_days,
    backfill_policy=BACKFILL_POLICY,
    io_manager_key="datasets",
    group_name="derive",
    kinds={"parquet"},
    owners=OWNERS,
    description=SPANS_DOC,
)
def spans(
    context: dg.AssetExecutionContext,
    transitions: StoredDays,
    carry_in: StoredDays,
    tags: pa.Table,
):
    def outputs() -> Iterator[DayOutput]:
        for tenant, day in run_days(context):
            day_start, day_end = day_bounds(day)
            rows, carry = transitions.batches(tenant, day), carry_in.read(tenant, day)
            chunks = spans_by_chunk(rows, carry, day_start, day_end, tags, tenant)
            yield DayOutput(tenant, day, chunks)

    return dg.Output(outputs())


def _sample_outs(width: str) -> dict[str, dg.AssetOut]:
    common = {"io_manager_key": "datasets", "kinds": {"parquet"}, "owners": OWNERS}
    return {
        f"samples_{width}": dg.AssetOut(**common, description=NUMERIC_DOC.format(width=width)),
        f"samples_str_{width}": dg.AssetOut(**common, description=STRING_DOC.format(width=width)),
    }


@dg.multi_asset(
    outs=_sample_outs("1m"),
    partitions_def=tenant_days,
    backfill_policy=BACKFILL_POLICY,
    group_name="derive",
)
def samples_1m(
    context: dg.AssetExecutionContext,
    transitions: StoredDays,
    carry_in: StoredDays,
    tags: pa.Table,
):
    def outputs(value_kind: str) -> Iterator[DayOutput]:
        for tenant, day in run_days(context):
            day_start, day_end = day_bounds(day)
            rows, carry = transitions.batches(tenant, day), carry_in.read(tenant, day)
            chunks = samples_by_chunk(
                rows, carry, day_start, day_end, timedelta(minutes=1), tags, value_kind
            )
            yield DayOutput(tenant, day, chunks)

    # Numeric and string samples are computed in two passes over the stored transitions (each
    # over the tags holding that kind) so that neither output waits in memory for the other.
    yield dg.Output(outputs("numeric"), output_name="samples_1m")
    yield dg.Output(outputs("string"), output_name="samples_str_1m")


def _rollup_asset(finer: str, coarser: str, width: timedelta) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name=f"samples_{coarser}",
        outs=_sample_outs(coarser),
        ins={
            "numeric": dg.AssetIn(f"samples_{finer}"),
            "string": dg.AssetIn(f"samples_str_{finer}"),
        },
        partitions_def=tenant_days,
        backfill_policy=BACKFILL_POLICY,
        group_name="derive",
    )
    def rolled_up(context: dg.AssetExecutionContext, numeric: StoredDays, string: StoredDays):
        def outputs(finer_days: StoredDays, schema: pa.Schema) -> Iterator[DayOutput]:
            for tenant, day in run_days(context):
                chunks = rollup_by_chunk(finer_days.batches(tenant, day), schema, width)
                yield DayOutput(tenant, day, chunks)

        yield dg.Output(outputs(numeric, SAMPLES), output_name=f"samples_{coarser}")
        yield dg.Output(outputs(string, SAMPLES_STR), output_name=f"samples_str_{coarser}")

    return rolled_up


samples_1h = _rollup_asset("1m", "1h", timedelta(hours=1))
samples_1d = _rollup_asset("1h", "1d", timedelta(days=1))
