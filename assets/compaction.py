"""Month copies of a tenant's closed months, for the read API (io_managers/compaction.py says
what a copy is and why a stale one is never read). One asset per dataset that has copies, each
downstream of the days of its month, so lineage, reruns and backfills are Dagster's as for the
days; the day partitions stay the datasets."""

import dagster as dg

from tagflow.assets.partitions import TenantMonths
from tagflow.assets.store_errors import is_store_error, store_write_failed
from tagflow.errors import MissingPartition
from tagflow.io_managers import ParquetDatasetIOManager
from tagflow.io_managers.compaction import COMPACTED_DATASETS, compact_month
from tagflow.io_managers.parquet_io_manager import ROWS_KEY, SHA256_KEY

GROUP = "serve"
OWNERS = ["team:tagflow"]


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
        for tenant, month in partitions.run_months(context):
            try:
                names = store.read("tags", tenant)
            except MissingPartition:  # nothing materialised for the tenant: nothing to copy
                names = None
            for key in sorted(context.selected_asset_keys, key=str):
                dataset = key.path[-1]
                try:
                    staged = None
                    if names is not None:
                        staged = compact_month(store, dataset, tenant, month, names)
                    if staged is not None:
                        try:
                            staged.publish()
                        finally:
                            staged.discard()
                except OSError as error:
                    if not is_store_error(error):
                        raise
                    raise store_write_failed(error, "the month copy") from None
                if staged is None:
                    yield dg.MaterializeResult(asset_key=key, metadata={"days": 0, ROWS_KEY: 0})
                    continue
                relation = store.month_relation(dataset, tenant, month)
                yield dg.MaterializeResult(
                    asset_key=key,
                    metadata={
                        **staged.metadata,
                        ROWS_KEY: staged.rows,
                        "bytes": staged.bytes,
                        SHA256_KEY: staged.sha256,
                        "dagster/relation_identifier": relation,
                    },
                )

    return month_copies
