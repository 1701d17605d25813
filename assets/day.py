"""The day step as a Dagster multi-asset: every dataset of a run's tenant-days, computed by the
Dagster-free day step (daystep.materialise: one streamed read of each day, the compute chain
per chunk of whole tags, each chunk audited and staged as it comes); the IO manager publishes
the files only after every chunk of every dataset passed (write–audit–publish). This module
only wires Dagster: partitions, resources, lineage, retries, failures and outputs.

The datasets stay separate assets with their lineage (tags → transitions → spans, samples_1m →
samples_1h → samples_1d); they are materialised together because each reads the same day,
which a step per dataset would read again from the file the previous step wrote.
"""

import warnings
from contextlib import closing
from datetime import timedelta

import dagster as dg

from tagflow.assets.partitions import TenantDays
from tagflow.assets.resources import SourceDatabase
from tagflow.assets.retries import source_lost
from tagflow.assets.store_errors import is_store_error, store_write_failed
from tagflow.daystep.materialise import materialise_days, stage_tags
from tagflow.errors import InvalidDerivedTag, SourceDataError, SourceUnavailable, UnknownTenant
from tagflow.io_managers import ParquetDatasetIOManager
from tagflow.io_managers.parquet_io_manager import column_schema
from tagflow.io_managers.partition_writer import StagedPartition
from tagflow.schemas.dataset_checks import AuditFailed
from tagflow.schemas.registry import DATASETS
from tagflow.source.fingerprints import DayFingerprint
from tagflow.transforms.derived.definitions import DerivedTagDefinitions

OWNERS = ["team:tagflow"]


def _lineage() -> dict[str, set[dg.AssetKey]]:
    """Which datasets each dataset of the day is computed from (the registry's parents)."""
    return {name: {dg.AssetKey(parent) for parent in DATASETS[name].parents} for name in DATASETS}


def freshness(late_after_hours: int) -> dg.FreshnessPolicy:
    """Late when nothing was published between midnight UTC, when a day ends, and
    `late_after_hours` later: the daily schedule publishes the day that ended then. Dagster
    evaluates a policy per asset, not per partition, so a backfill of old days in that window
    also counts; the missing days of a tenant show in the asset's partitions."""
    return dg.FreshnessPolicy.cron(
        deadline_cron=f"0 {late_after_hours} * * *",
        lower_bound_delta=timedelta(hours=late_after_hours),
        timezone="UTC",
    )


def day_assets(
    partitions: TenantDays,
    derived: DerivedTagDefinitions | None,
    late_after_hours: int,
) -> dg.AssetsDefinition:
    """The day step; `derived` holds the deployment's derived tags (DESIGN §8), materialised
    with the source tags of their tenant in every dataset; its datasets are late
    `late_after_hours` after a day ended (see freshness). Any subset of the datasets can be
    materialised (Dagster's "Materialize selected", `dagster asset materialize --select`): the
    day is read and computed once for all of them, since each depends on the same read, and
    only the selected ones are published."""
    deps = _lineage()
    derived = derived or DerivedTagDefinitions({})
    policy = freshness(late_after_hours)

    @dg.multi_asset(
        name="day",
        outs={
            name: dg.AssetOut(
                io_manager_key="datasets",
                kinds={"postgres", "parquet"} if name == "tags" else {"parquet"},
                owners=OWNERS,
                description=DATASETS[name].description,
                # The catalog shows the columns before the first materialisation too.
                metadata={"dagster/column_schema": column_schema(name)},
                group_name=DATASETS[name].group,
                freshness_policy=policy,
                # A subset run yields its selection only, which Dagster allows of optional
                # outputs; a run of every dataset still yields each one.
                is_required=False,
            )
            for name in DATASETS
        },
        internal_asset_deps=deps,
        can_subset=True,
        partitions_def=partitions.definition,
        backfill_policy=partitions.backfill_policy,
        pool="source_db",
    )
    def day(
        context: dg.AssetExecutionContext,
        source: SourceDatabase,
        datasets: dg.ResourceParam[ParquetDatasetIOManager],
    ):
        store = datasets.store()
        days = partitions.run_days(context)
        # A run covers one tenant: its tag list is read (and staged) once.
        tenant = days[0][0]
        _sweep_stale_temp_files(context, datasets, tenant)
        staged: dict[str, list[StagedPartition]] = {name: [] for name in DATASETS}
        fingerprints = []
        try:
            reader = source.reader()
            tags, staged_tags, plan = stage_tags(reader, store, tenant, derived.for_tenant(tenant))
            staged["tags"].append(staged_tags)
            # Consecutive days: each day's read begins while the one before is written.
            each_day = materialise_days(reader, store, tenant, [d for _, d in days], tags, plan)
            with closing(each_day):
                for day_staged, fingerprint in each_day:
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
            # Not `from`: source_lost sets the cause of the retry or Failure it returns.
            raise source_lost(context, error, source.retry_budget_s)  # noqa: B904
        except BaseException as error:
            _discard(staged)
            if is_store_error(error):
                raise store_write_failed(error, "the day's files") from None
            raise
        selected = {key.path[-1] for key in context.selected_asset_keys}
        _discard({name: staged[name] for name in DATASETS if name not in selected})
        for name in DATASETS:
            if name in selected:
                yield _output(name, staged[name], fingerprints)

    return day


def _sweep_stale_temp_files(
    context: dg.AssetExecutionContext, datasets: ParquetDatasetIOManager, tenant: str
) -> None:
    """Remove the temp files that killed runs of the tenant left (unwritten for longer than
    TAGFLOW_TEMP_MAX_AGE_S): every run sweeps its own tenant's folders before it writes, so the
    daily runs sweep the whole store without an operator (and the temp folder's spill folders
    of killed reads). A failed sweep never fails the run."""
    try:
        report = datasets.sweep_stale_temp_files(tenant)
    except OSError as error:
        context.log.warning(f"sweeping stale temp files failed ({error.strerror}); carrying on")
        return
    if report.removed or report.failed or report.spill_folders_removed:
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
