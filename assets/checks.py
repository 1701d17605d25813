"""Blocking asset checks: each stored partition is validated against its pandera schema."""


import dagster as dg
import pyarrow as pa

from assets.metadata import partition_of
from pipelines.partitions import tenant_days
from schemas.dataset_checks import validate_partition
from tagflow.time_ranges import day_bounds

CHECKED_DATASETS = (
    "tags",
    "transitions",
    "carry_in",
    "spans",
    "samples_1m",
    "samples_str_1m",
    "samples_1h",
    "samples_str_1h",
    "samples_1d",
    "samples_str_1d",
)


def _schema_check(dataset: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dataset,
        name="pandera_schema",
        description=f"The stored {dataset} partition satisfies its pandera schema "
        "(types, nullability, ordering, uniqueness, ranges).",
        blocking=True,
        partitions_def=tenant_days,
        additional_ins={"stored": dg.AssetIn(dataset)},
    )
    def check(context: dg.AssetCheckExecutionContext, stored: pa.Table) -> dg.AssetCheckResult:
        _, day = partition_of(context)
        day_start, day_end = day_bounds(day)
        outcome = validate_partition(dataset, stored, day_start, day_end)
        return dg.AssetCheckResult(
            passed=outcome.passed,
            metadata={"failures": outcome.failures, "summary": outcome.summary},
        )

    return check


schema_checks = [_schema_check(dataset) for dataset in CHECKED_DATASETS]
