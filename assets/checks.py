"""Blocking asset checks: each stored partition is validated against its pandera schema."""

import warnings

import dagster as dg

from tagflow.assets.partitions import TenantDays, tenant_day_key
from tagflow.io_managers import ParquetDatasetIOManager
from tagflow.schemas.dataset_checks import CheckOutcome, validate_partition
from tagflow.schemas.registry import DATASETS
from tagflow.time_range import day_bounds


def _schema_check(dataset: str, partitions: TenantDays) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dataset,
        name="pandera_schema",
        description=f"The stored {dataset} partition satisfies its pandera schema "
        "(types, nullability, ordering, uniqueness, ranges).",
        blocking=True,
        partitions_def=partitions.definition,
    )
    def check(
        context: dg.AssetCheckExecutionContext, datasets: dg.ResourceParam[ParquetDatasetIOManager]
    ) -> dg.AssetCheckResult:
        # Reads the file itself (not the in-memory output) so a corrupted file fails the check.
        days = partitions.run_days(context)
        outcomes = {}
        for tenant, day in days:
            stored = datasets.store().read(dataset, tenant, day)
            outcomes[tenant, day] = validate_partition(dataset, stored, *day_bounds(day))
        if len(days) == 1:
            (outcome,) = outcomes.values()
            return dg.AssetCheckResult(passed=outcome.passed, metadata=_metadata(outcome))
        # A range run: Dagster records one result per step, so each day's result is logged
        # as its own partition's evaluation, and the step's result is that of all days.
        for (tenant, day), outcome in outcomes.items():
            context.op_execution_context.log_event(
                dg.AssetCheckEvaluation(
                    asset_key=dg.AssetKey(dataset),
                    check_name="pandera_schema",
                    passed=outcome.passed,
                    metadata=_metadata(outcome),
                    blocking=True,
                    partition=str(tenant_day_key(tenant, day.isoformat())),
                )
            )
        failed = [f"{t} {d.isoformat()}" for (t, d), o in outcomes.items() if not o.passed]
        return dg.AssetCheckResult(
            passed=not failed,
            metadata={"days": len(days), "failed_days": ", ".join(failed) or "none"},
        )

    return check


def _metadata(outcome: CheckOutcome) -> dict[str, str | int]:
    return {"failures": outcome.failures, "summary": outcome.summary}


def schema_checks(partitions: TenantDays) -> list[dg.AssetChecksDefinition]:
    """One blocking check per dataset of the registry."""
    # Partitioned asset checks are a Dagster preview feature; it is what lets a check run per
    # tenant-day partition, so its warning is expected here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [_schema_check(dataset, partitions) for dataset in DATASETS]
