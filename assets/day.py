"""Every dataset of a tenant-day in one step: the tag list, then one streamed read of the day
from the source, the day's compute chain (transforms.day) on each chunk of whole tags, each chunk
audited and written to a staged file as it comes (write–audit–publish); the IO manager publishes
the files only after every chunk of every dataset passed.

The datasets stay separate assets with their lineage (tags → transitions → spans, samples_1m →
samples_1h → samples_1d); they are materialised together because each reads the same day,
which a step per dataset would read again from the file the previous step wrote.
"""

import time
import warnings
from collections import Counter
from datetime import date

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tagflow.assets.derived_tags import DerivedInDay, derived_plan
from tagflow.assets.partitions import TenantDays
from tagflow.assets.resources import SourceDatabase
from tagflow.assets.source_retries import SOURCE_RETRY, source_lost
from tagflow.errors import InvalidDerivedTag, SourceDataError, SourceUnavailable, UnknownTenant
from tagflow.io_managers import ParquetDatasetIOManager
from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.io_managers.day_writer import DayWriter
from tagflow.io_managers.partition_writer import StagedPartition
from tagflow.schemas.arrow import TAGS_DATASET, conform
from tagflow.schemas.dataset_checks import AuditFailed, audit_table
from tagflow.schemas.registry import DATASETS, DATED, WIDTHS, Kind, samples_name
from tagflow.source.day_stream import raw_day_chunks
from tagflow.source.fingerprints import DayFingerprint, RowsFingerprint, stream_fingerprint
from tagflow.time_range import day_bounds
from tagflow.transforms.day import compute_day
from tagflow.transforms.derived.day import DerivedPlan
from tagflow.transforms.derived.definitions import DerivedTagDefinitions, TenantDerivedTags
from tagflow.transforms.tag_order import TagOrder

OWNERS = ["team:tagflow"]
_EXTRACTED = {Kind.TAGS, Kind.TRANSITIONS, Kind.CARRY_IN}


def _lineage() -> dict[str, set[dg.AssetKey]]:
    """Which datasets each dataset of the day is computed from."""
    tags, read = dg.AssetKey("tags"), {dg.AssetKey("transitions"), dg.AssetKey("carry_in")}
    deps: dict[str, set[dg.AssetKey]] = {"tags": set(), "transitions": {tags}, "carry_in": {tags}}
    deps["spans"] = read
    finer = None
    for width_name in WIDTHS:
        for string in (False, True):
            name = samples_name(width_name, string)
            deps[name] = read if finer is None else {dg.AssetKey(samples_name(finer, string))}
        finer = width_name
    return deps


def materialise_day(
    source: SourceDatabase,
    store: DatasetStore,
    tenant: str,
    day: date,
    tags: pa.Table,
    derived: DerivedPlan | None = None,
) -> tuple[dict[str, StagedPartition], DayFingerprint]:
    """Every dated dataset of one tenant-day staged (audited, not yet published), and the
    fingerprint of what was read; with the tenant's `derived` tags, theirs too."""
    day_start, day_end = day_bounds(day)
    order = TagOrder.of(tags)
    ids_in_name_order = order.tag_id
    raw_carry_in = source.read_carry_in(tenant, day_start)
    expected_rows = source.estimate_day_rows(tenant, day_start, day_end)
    rows = RowsFingerprint()
    counts: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    writer = DayWriter(store, tenant, day, day_start, day_end)
    in_day = None
    if derived is not None:
        in_day = DerivedInDay(derived, source, tenant, day_start, day_end, raw_carry_in)
    rank = 0  # source tags written so far: derived tags go in where their names sort
    try:
        chunks = raw_day_chunks(
            source.tenant_url(tenant), tenant, ids_in_name_order, day_start, day_end,
            expected_rows, rows, input_ids=None if derived is None else derived.input_ids,
            cuts=() if derived is None else derived.cuts(),
        )  # fmt: skip
        while (chunk := _timed(seconds, "read_s", lambda: next(chunks, None))) is not None:
            if in_day is not None:
                if chunk.derived_inputs:
                    _timed(seconds, "derived_s", lambda c=chunk: in_day.compute(c.rows))
                    counts["derived_transitions"] += in_day.transitions
                    continue
                for tables in in_day.due(rank if chunk.tag_ids is not None else len(order)):
                    writer.add(tables)
                rank += 0 if chunk.tag_ids is None else len(chunk.tag_ids)
            carried = pc.is_in(raw_carry_in.column("tag_id"), value_set=_ids(chunk.tag_ids))
            result = _timed(
                seconds,
                "compute_s",
                lambda c=chunk, k=carried: compute_day(
                    c.rows, raw_carry_in.filter(k), order, day_start, day_end, tenant
                ),
            )
            counts.update(result.counts)
            writer.add(result.tables)
        staged = _timed(seconds, "finish_s", lambda: writer.finish(list(DATED), counts, rows.rows))
    except BaseException:
        writer.discard()
        raise
    finally:
        writer.close()
    derived_version = in_day.version if in_day is not None else ""
    fingerprint = stream_fingerprint(rows, raw_carry_in, tags, derived_version)
    timings = {name: round(value, 3) for name, value in (seconds + writer.seconds).items()}
    staged["transitions"].metadata |= {
        **counts, "source_version": fingerprint.version, **timings
    }  # fmt: skip
    return staged, fingerprint


def _timed(seconds: Counter[str], name: str, run):
    began = time.perf_counter()
    try:
        return run()
    finally:
        seconds[name] += time.perf_counter() - began


def _ids(tag_ids: np.ndarray | None) -> pa.Array:
    return pa.array([] if tag_ids is None else tag_ids, type=pa.int32())


def stage_tags(
    source: SourceDatabase,
    store: DatasetStore,
    tenant: str,
    derived: TenantDerivedTags | None = None,
) -> tuple[pa.Table, StagedPartition]:
    """The tenant's tag list, sorted by name (codepoint order, as every dataset, for readers'
    row-group pruning), audited and staged, with the rows of its `derived` tags (the list
    returned holds the source tags only). Its metadata counts the tenant's rows that no day
    holds (a time of ±infinity or NULL, DESIGN §2)."""
    tags = source.read_tags(tenant).sort_by("tag_name")
    written = conform(tags, TAGS_DATASET)
    plan = derived_plan(derived, tags) if derived is not None else None
    if plan is not None:
        written = pa.concat_tables([written, plan.tags]).sort_by("tag_name")
    audit_table("tags", written)
    with store.stage("tags", tenant) as writer:
        writer.write(written)
        staged = writer.close()
    staged.metadata["out_of_range_skipped"] = source.count_out_of_range(tenant)
    staged.metadata["derived_tags"] = 0 if plan is None else plan.tags.num_rows
    return tags, staged


def day_assets(
    partitions: TenantDays, derived: DerivedTagDefinitions | None = None
) -> dg.AssetsDefinition:
    """The day step; `derived` holds the deployment's derived tags (DESIGN §8), materialised
    with the source tags of their tenant in every dataset."""
    deps = _lineage()
    derived = derived or DerivedTagDefinitions({})

    @dg.multi_asset(
        name="day",
        outs={
            name: dg.AssetOut(
                io_manager_key="datasets",
                kinds={"postgres", "parquet"} if name == "tags" else {"parquet"},
                owners=OWNERS,
                description=DATASETS[name].description,
                group_name="extract" if DATASETS[name].kind in _EXTRACTED else "derive",
            )
            for name in DATASETS
        },
        internal_asset_deps=deps,
        partitions_def=partitions.definition,
        backfill_policy=partitions.backfill_policy,
        retry_policy=SOURCE_RETRY,
        pool="source_db",
    )
    def day(
        context: dg.AssetExecutionContext,
        source: SourceDatabase,
        datasets: dg.ResourceParam[ParquetDatasetIOManager],
    ):
        store = datasets.store()
        days = partitions.run_days(context)
        _sweep_stale_temp_files(context, datasets, days[0][0])
        staged: dict[str, list[StagedPartition]] = {name: [] for name in DATASETS}
        fingerprints = []
        try:
            # A run covers one tenant: its tag list is read (and staged) once.
            definitions = derived.for_tenant(days[0][0])
            tags, staged_tags = stage_tags(source, store, days[0][0], definitions)
            staged["tags"].append(staged_tags)
            plan = derived_plan(definitions, tags)
            for tenant, day in days:
                day_staged, fingerprint = materialise_day(source, store, tenant, day, tags, plan)
                fingerprints.append(fingerprint)
                for name, partition in day_staged.items():
                    staged[name].append(partition)
        except AuditFailed as failure:
            _discard(staged)
            raise dg.Failure(
                description=f"nothing was published: {failure}",
                metadata={
                    "error": "AuditFailed",
                    "dataset": failure.dataset,
                    "failure_cases": dg.MetadataValue.json(failure.cases),
                },
                allow_retries=False,
            ) from None
        except (SourceDataError, UnknownTenant, InvalidDerivedTag) as error:
            # The source (or the derived tags file) must be fixed first: a retry would fail again.
            _discard(staged)
            raise dg.Failure(
                description=str(error),
                metadata={"error": type(error).__name__},
                allow_retries=False,
            ) from None
        except SourceUnavailable as error:
            _discard(staged)
            # Not `from`: source_lost sets the cause of the Failure it may return itself.
            raise source_lost(context, error, source.retry_budget_s)  # noqa: B904
        except BaseException:
            _discard(staged)
            raise
        for name in DATASETS:
            yield _output(name, staged[name], fingerprints)

    return day


def _sweep_stale_temp_files(
    context: dg.AssetExecutionContext, datasets: ParquetDatasetIOManager, tenant: str
) -> None:
    """Remove the temp files that killed runs of the tenant left (unwritten for longer than
    TAGFLOW_TEMP_MAX_AGE_S): every run sweeps its own tenant's folders before it writes, so the
    daily runs sweep the whole store without an operator. A failed sweep never fails the run."""
    try:
        report = datasets.sweep_stale_temp_files(tenant)
    except OSError as error:
        context.log.warning(f"sweeping stale temp files failed ({error.strerror}); carrying on")
        return
    if report.removed or report.failed:
        context.log.info(f"store sweep of tenant {tenant}: {report}")


def _discard(staged: dict[str, list[StagedPartition]]) -> None:
    for partitions in staged.values():
        for partition in partitions:
            partition.discard()


def _output(name: str, staged: list[StagedPartition], fingerprints: list[DayFingerprint]):
    """The dataset's staged partitions for the IO manager to publish. `transitions` carries the
    source fingerprint as its data version, which the late-data sensor compares with a fresh
    one; Dagster records one version per output, so a range run records none (its days inside
    the sensor's lookback are fingerprinted again and rerun once, as single days)."""
    if name != "transitions" or len(fingerprints) != 1:
        return dg.Output(staged, output_name=name)
    # Data versions are what the late-data sensor is built on; Dagster marks the parameter beta.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        version = dg.DataVersion(fingerprints[0].version)
        return dg.Output(staged, output_name=name, data_version=version)
