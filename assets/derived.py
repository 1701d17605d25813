"""Assets derived from a day's transitions: spans and LOCF-resampled metrics at 1m, 1h, 1d."""

from datetime import timedelta

import dagster as dg
import pyarrow as pa

from assets.extraction import OWNERS
from assets.metadata import partition_of, stopwatch, table_metadata
from pipelines.partitions import tenant_days
from tagflow.time_ranges import day_bounds
from transforms.rollup import rollup
from transforms.samples import samples
from transforms.spans import spans_for_day

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
    io_manager_key="datasets",
    group_name="derive",
    kinds={"parquet"},
    owners=OWNERS,
    description=SPANS_DOC,
)
def spans(
    context: dg.AssetExecutionContext, transitions: pa.Table, carry_in: pa.Table, tags: pa.Table
) -> dg.Output[pa.Table]:
    tenant, day = partition_of(context)
    day_start, day_end = day_bounds(day)
    with stopwatch() as took:
        table = spans_for_day(transitions, carry_in, day_start, day_end, tags, tenant)
    return dg.Output(
        table, metadata={**table_metadata(table, "begin_at"), "seconds": took["seconds"]}
    )


def _sample_outs(width: str) -> dict[str, dg.AssetOut]:
    common = {"io_manager_key": "datasets", "kinds": {"parquet"}, "owners": OWNERS}
    return {
        f"samples_{width}": dg.AssetOut(**common, description=NUMERIC_DOC.format(width=width)),
        f"samples_str_{width}": dg.AssetOut(**common, description=STRING_DOC.format(width=width)),
    }


def _sample_outputs(width: str, numeric: pa.Table, string: pa.Table, seconds: float):
    yield dg.Output(
        numeric,
        output_name=f"samples_{width}",
        metadata={**table_metadata(numeric, "bucket_start"), "seconds": seconds},
    )
    yield dg.Output(
        string,
        output_name=f"samples_str_{width}",
        metadata={**table_metadata(string, "bucket_start"), "seconds": seconds},
    )


@dg.multi_asset(outs=_sample_outs("1m"), partitions_def=tenant_days, group_name="derive")
def samples_1m(
    context: dg.AssetExecutionContext, transitions: pa.Table, carry_in: pa.Table, tags: pa.Table
):
    _, day = partition_of(context)
    day_start, day_end = day_bounds(day)
    with stopwatch() as took:
        result = samples(transitions, carry_in, day_start, day_end, timedelta(minutes=1), tags)
    yield from _sample_outputs("1m", result.numeric, result.string, took["seconds"])


def _rollup_asset(finer: str, coarser: str, width: timedelta) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name=f"samples_{coarser}",
        outs=_sample_outs(coarser),
        ins={
            "numeric": dg.AssetIn(f"samples_{finer}"),
            "string": dg.AssetIn(f"samples_str_{finer}"),
        },
        partitions_def=tenant_days,
        group_name="derive",
    )
    def rolled_up(numeric: pa.Table, string: pa.Table):
        with stopwatch() as took:
            numeric_out, string_out = rollup(numeric, width), rollup(string, width)
        yield from _sample_outputs(coarser, numeric_out, string_out, took["seconds"])

    return rolled_up


samples_1h = _rollup_asset("1m", "1h", timedelta(hours=1))
samples_1d = _rollup_asset("1h", "1d", timedelta(days=1))
