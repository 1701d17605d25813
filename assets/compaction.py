"""Month copies of a tenant's closed months, for the read API (io_managers/compaction.py says
what a copy is and why a stale one is never read). One asset per dataset that has copies, each
downstream of the days of its month, so lineage, reruns and backfills are Dagster's as for the
days; the day partitions stay the datasets."""

from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date

import dagster as dg

from tagflow.assets.partitions import TenantMonths
from tagflow.errors import MissingPartition
from tagflow.io_managers import DatasetStore, ParquetDatasetIOManager
from tagflow.io_managers.compaction import COMPACTED_DATASETS, compact_month
from tagflow.io_managers.parquet_io_manager import ROWS_KEY, SHA256_KEY
from tagflow.io_managers.partition_writer import StagedPartition

GROUP = "serve"
OWNERS = ["team:tagflow"]
COPY_WORKERS = 2


def copy_key(dataset: str) -> dg.AssetKey:
    return dg.AssetKey(["month_copies", dataset])


def compaction_assets(partitions: TenantMonths) -> dg.AssetsDefinition:
    specs = [
        dg.AssetSpec(
            copy_key(dataset),
            deps=[dg.AssetDep(dataset, partition_mapping=partitions.from_days)],
            group_name=GROUP,
            owners=OWNERS,
            kinds={"parquet"},
            description=(
                f"The month's {dataset} days in one file clustered by tag, for the read API; "
                "a day rewritten since is read from its own file."
            ),
        )
        for dataset in COMPACTED_DATASETS
    ]

    @dg.multi_asset(
        name="copy_month",
        specs=specs,
        partitions_def=partitions.definition,
        can_subset=True,
    )
    def month_copies(
        context: dg.AssetExecutionContext, datasets: dg.ResourceParam[ParquetDatasetIOManager]
    ):
        store = datasets.store()
        keys = sorted(context.selected_asset_keys, key=str)
        # Two datasets copied at once: decoding, sorting and encoding release the GIL, and
        # each copy holds one chunk of rows, so memory stays bounded.
        with ThreadPoolExecutor(COPY_WORKERS, thread_name_prefix="tagflow-copy") as pool:
            for tenant, month in partitions.run_months(context):
                try:
                    names = store.read("tags", tenant)
                except MissingPartition:  # nothing materialised for the tenant: nothing to copy
                    names = None
                copies = [
                    pool.submit(compact_month, store, key.path[-1], tenant, month, names)
                    for key in (keys if names is not None else [])
                ]
                try:
                    for index, key in enumerate(keys):
                        staged = copies[index].result() if copies else None
                        yield _published(store, key, tenant, month, staged)
                finally:
                    _discard_unpublished(copies)

    return month_copies


def _discard_unpublished(copies: list[Future[StagedPartition | None]]) -> None:
    """After a failure, the staged copies not yet published (a published one is no longer
    staged: discarding it does nothing)."""
    for copy in copies:
        if copy.cancel():
            continue
        try:
            staged = copy.result()
        except Exception:  # its own failure: it left nothing staged
            continue
        if staged is not None:
            staged.discard()


def _published(
    store: DatasetStore, key: dg.AssetKey, tenant: str, month: date, staged: StagedPartition | None
) -> dg.MaterializeResult:
    if staged is None:
        return dg.MaterializeResult(asset_key=key, metadata={"days": 0, ROWS_KEY: 0})
    try:
        staged.publish()
    finally:
        staged.discard()
    relation = store.month_relation(key.path[-1], tenant, month)
    return dg.MaterializeResult(
        asset_key=key,
        metadata={
            **staged.metadata,
            ROWS_KEY: staged.rows,
            "bytes": staged.bytes,
            SHA256_KEY: staged.sha256,
            "dagster/relation_identifier": relation,
        },
    )
