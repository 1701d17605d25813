"""The blocking asset checks of every dataset, in one step: each published partition must be the
very file that passed its pandera audit when it was written. A partition is published only after
every chunk of it passed (write–audit–publish), and its materialisation records the row count
and content hash written; the check reads the file's footer and hashes its content against that
record, so a truncated, corrupted or replaced file fails, also when the check is run again later
on its own.

Beside them, a non-blocking check of `spans` warns of detached annotations (DESIGN §9): those
of computed spans that began on the day but that the day's published spans no longer hold."""

import warnings
from collections.abc import Mapping
from datetime import date
from typing import Any

import dagster as dg

from tagflow.annotations.detached import detached_span_ids
from tagflow.assets.partitions import TenantDays, tenant_day_key
from tagflow.assets.resources import NO_STATE, StateDatabase
from tagflow.errors import TagflowError
from tagflow.io_managers import DatasetStore, ParquetDatasetIOManager
from tagflow.io_managers.parquet_io_manager import ROWS_KEY, SHA256_KEY, tenant_and_day
from tagflow.schemas.registry import DATASETS
from tagflow.time_range import day_bounds

CHECK_NAME = "audited_file_intact"
DESCRIPTION = (
    "Every chunk of the partition passed its pandera schema (types, nullability, ordering, "
    "uniqueness, ranges) before the file was published, and the published file is still that "
    "file: its footer reads and its row count and content hash match what was written."
)


def _recorded(
    instance: dg.DagsterInstance,
    definition: dg.MultiPartitionsDefinition,
    dataset: str,
    partitions: list[str],
    tenant: str,
) -> dict[str, dict]:
    """The row count and hash recorded for each partition by its latest materialisation; for
    the undated `tags`, the tenant's latest one whatever its day (every run rewrites it)."""

    def tenant_day(partition: str) -> tuple[str, date]:
        return tenant_and_day(definition.get_partition_key_from_str(partition))

    key = dg.AssetKey(dataset)
    latest = instance.event_log_storage.get_latest_storage_id_by_partition(
        key,
        dg.DagsterEventType.ASSET_MATERIALIZATION,
        None if not DATASETS[dataset].dated else set(partitions),
    )
    if not DATASETS[dataset].dated:
        of_tenant = [sid for p, sid in latest.items() if tenant_day(p)[0] == tenant]
        latest = {p: max(of_tenant) for p in partitions} if of_tenant else {}
    if not latest:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, storage_ids=sorted(set(latest.values()))),
        limit=len(latest),
    ).records
    by_id: dict[int, Mapping[str, dg.MetadataValue]] = {}
    for record in records:
        materialization = record.asset_materialization
        if materialization is None:  # the filter above asks for materialisations only
            raise RuntimeError(f"event {record.storage_id} of {dataset} is no materialisation")
        by_id[record.storage_id] = materialization.metadata
    out: dict[str, dict] = {}
    for partition, storage_id in latest.items():
        metadata = by_id.get(storage_id, {})
        figures: dict[str, Any] = {
            k: v.value for k, v in metadata.items() if k in (ROWS_KEY, SHA256_KEY)
        }
        if "days" in metadata:  # a range run: each day's figures are in its table
            day = tenant_day(partition)[1].isoformat()
            per_day = metadata["days"].value
            day_figures = (
                per_day.get(f"{tenant} {day}", {}) if isinstance(per_day, Mapping) else None
            )
            if not isinstance(day_figures, Mapping):  # a JSON table of figures by day
                raise RuntimeError(f"the 'days' metadata of {dataset} {partition} is no table")
            figures = dict(day_figures) or figures
        out[partition] = figures
    return out


def schema_checks(partitions: TenantDays) -> dg.AssetChecksDefinition:
    """Every dataset's check, in one step after the day step."""
    # Partitioned asset checks are a Dagster preview feature; it is what lets a check run per
    # tenant-day partition, so its warning is expected here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return _published_files_check(partitions)


def _published_files_check(partitions: TenantDays) -> dg.AssetChecksDefinition:
    specs = [
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset=dataset,
            description=DESCRIPTION,
            blocking=True,
            partitions_def=partitions.definition,
        )
        for dataset in DATASETS
    ]
    specs.append(
        dg.AssetCheckSpec(
            ATTACHED_CHECK,
            asset="spans",
            description=ATTACHED_DESCRIPTION,
            blocking=False,
            partitions_def=partitions.definition,
        )
    )

    @dg.multi_asset_check(specs=specs, can_subset=True, name="published_files")
    def published_files_check(
        context: dg.AssetCheckExecutionContext,
        state: StateDatabase,
        datasets: dg.ResourceParam[ParquetDatasetIOManager],
    ):
        days = partitions.run_days(context)
        store = datasets.store()
        instance = context.instance
        for check_key in sorted(context.selected_asset_check_keys, key=str):
            if check_key.name == ATTACHED_CHECK:
                yield _annotations_attached(context, state, store, days)
                continue
            dataset = check_key.asset_key.path[-1]
            keys = [str(tenant_day_key(t, d.isoformat())) for t, d in days]
            recorded = _recorded(instance, partitions.definition, dataset, keys, days[0][0])
            failed = []
            for (tenant, day), key in zip(days, keys, strict=True):
                figures = recorded.get(key, {})
                at = day if DATASETS[dataset].dated else None
                reason = (
                    store.verify(dataset, tenant, at, figures[ROWS_KEY], figures[SHA256_KEY])
                    if ROWS_KEY in figures and SHA256_KEY in figures
                    else "no audited materialisation is recorded for this partition"
                )
                if reason:
                    failed.append(f"{tenant} {day.isoformat()}")
                metadata = {"verdict": reason or "audited when written; the file is intact"}
                if len(days) > 1:
                    # A range run: each day's evaluation is its own partition's.
                    # Dagster's UserEvent annotation omits AssetCheckEvaluation, which
                    # log_event handles (an isinstance branch of its own).
                    context.op_execution_context.log_event(
                        dg.AssetCheckEvaluation(  # type: ignore[arg-type]  # see above
                            asset_key=check_key.asset_key,
                            check_name=CHECK_NAME,
                            passed=not reason,
                            metadata=metadata,
                            blocking=True,
                            partition=key,
                        )
                    )
                    continue
                yield dg.AssetCheckResult(
                    asset_key=check_key.asset_key,
                    check_name=CHECK_NAME,
                    passed=not reason,
                    metadata=metadata,
                )
            if len(days) > 1:
                yield dg.AssetCheckResult(
                    asset_key=check_key.asset_key,
                    check_name=CHECK_NAME,
                    passed=not failed,
                    metadata={"days": len(days), "failed_days": ", ".join(failed) or "none"},
                )

    return published_files_check


ATTACHED_CHECK = "annotations_attached"
SPANS = dg.AssetKey("spans")
ATTACHED_DESCRIPTION = (
    "Every annotation of a computed span that began on the day is still on one of the day's "
    "spans. A warning lists the detached ones (late data or a rerun changed the run, so its id "
    "is no longer computed): they are kept, and a person may move them to another span or keep "
    "them as spans of their own. Never fails the run; a state database that is down is a "
    "warning too."
)
# Ids listed in a warning's metadata; the count says how many there are.
_LISTED_IDS = 1000


def _annotations_attached(
    context: dg.AssetCheckExecutionContext,
    state: StateDatabase,
    store: DatasetStore,
    days: list[tuple[str, date]],
) -> dg.AssetCheckResult:
    """The detached-annotations check of `spans` for the run's days (in the same step as the
    files' checks: a step of its own cost every run a process start)."""
    results = [_attached(state, store, tenant, day) for tenant, day in days]
    if len(days) == 1:
        return results[0]
    for (tenant, day), result in zip(days, results, strict=True):
        # A range run: each day's evaluation is its own partition's (as the files' checks).
        context.op_execution_context.log_event(
            dg.AssetCheckEvaluation(  # type: ignore[arg-type]  # see published_files
                asset_key=dg.AssetKey("spans"),
                check_name=ATTACHED_CHECK,
                passed=result.passed,
                metadata=result.metadata,
                severity=result.severity,
                partition=str(tenant_day_key(tenant, day.isoformat())),
            )
        )
    warned = [
        f"{t} {d.isoformat()}" for (t, d), r in zip(days, results, strict=True) if not r.passed
    ]
    return dg.AssetCheckResult(
        asset_key=dg.AssetKey("spans"),
        check_name=ATTACHED_CHECK,
        passed=not warned,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"days": len(days), "warned_days": ", ".join(warned) or "none"},
    )


def _attached(
    state: StateDatabase, store: DatasetStore, tenant: str, day: date
) -> dg.AssetCheckResult:
    """One tenant-day's evaluation: passed, or a warning with the detached ids or the reason
    the annotations could not be checked."""
    if not state.configured:
        # Without a state database nobody can annotate: nothing can be detached.
        return dg.AssetCheckResult(
            asset_key=SPANS,
            check_name=ATTACHED_CHECK,
            passed=True,
            metadata={"verdict": f"not checked: {NO_STATE}"},
        )
    day_start, day_end = day_bounds(day)
    try:
        computed = store.read_tag_rows("spans", tenant, day, columns=["id"]).column("id")
        detached = detached_span_ids(state.store(), tenant, day_start, day_end, computed)
    except TagflowError as error:
        return dg.AssetCheckResult(
            asset_key=SPANS,
            check_name=ATTACHED_CHECK,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"verdict": f"annotations could not be checked: {error}"},
        )
    if not detached:
        return dg.AssetCheckResult(
            asset_key=SPANS,
            check_name=ATTACHED_CHECK,
            passed=True,
            metadata={"verdict": "every annotation of the day's spans is attached"},
        )
    return dg.AssetCheckResult(
        asset_key=SPANS,
        check_name=ATTACHED_CHECK,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "verdict": f"{len(detached)} annotation(s) detached: their spans are no longer "
            "computed; they are kept (move each to another span, or keep it as a person's span)",
            "detached": len(detached),
            "detached_ids": dg.MetadataValue.json(detached[:_LISTED_IDS]),
        },
    )
