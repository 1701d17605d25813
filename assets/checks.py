"""Blocking asset checks: each stored partition is validated against its pandera schema."""

import warnings

import dagster as dg

from assets.metadata import partition_of
from io_managers import ParquetDatasetIOManager
from pipelines.partitions import tenant_days
from schemas.arrow import DATASET_SCHEMAS
from schemas.dataset_checks import validate_partition
from tagflow.time_ranges import day_bounds

# Every dataset has a check; its schema list is the one definition of the datasets.
CHECKED_DATASETS = tuple(DATASET_SCHEMAS)


def _schema_check(dataset: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dataset,
        name="pandera_schema",
        description=f"The stored {dataset} partition satisfies its pandera schema "
        "(types, nullability, ordering, uniqueness, ranges).",
        blocking=True,
        partitions_def=tenant_days,
    )
    def check(
        context: dg.AssetCheckExecutionContext, datasets: dg.ResourceParam[ParquetDatasetIOManager]
    ) -> dg.AssetCheckResult:
        # Reads the file itself (not the in-memory output) so a corrupted file fails the check.
        tenant, day = partition_of(context)
        day_start, day_end = day_bounds(day)
        stored = datasets.store().read(dataset, tenant, day)
        outcome = validate_partition(dataset, stored, day_start, day_end)
        return dg.AssetCheckResult(
            passed=outcome.passed,
            metadata={"failures": outcome.failures, "summary": outcome.summary},
        )

    return check


# Partitioned asset checks are a Dagster preview feature; it is what lets a check run per
# tenant-day partition, so its warning is expected here.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)
    schema_checks = [_schema_check(dataset) for dataset in CHECKED_DATASETS]
