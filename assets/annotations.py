"""The analysts' copy of the span annotations (DESIGN §9): a tenant's current annotation records
and their history as Parquet beside the other datasets, so DuckDB joins them to `spans` by `id`.
Partitioned by tenant alone; the annotations sensor runs it when a tenant's history grows."""

import dagster as dg

from tagflow.annotations.export import HISTORY, RECORDS, export_annotations
from tagflow.assets.partitions import tenants
from tagflow.assets.resources import NO_STATE, StateDatabase
from tagflow.assets.retries import state_lost
from tagflow.errors import StateUnavailable
from tagflow.io_managers import ParquetDatasetIOManager
from tagflow.io_managers.parquet_io_manager import column_schema, published_metadata
from tagflow.schemas.registry import ANNOTATION_DATASETS

OWNERS = ["team:tagflow"]
HIGH_WATER_MARK = "high_water_mark"


def annotation_assets() -> dg.AssetsDefinition:
    """Both annotation datasets of one tenant, written in one step from one read of the state
    database."""

    @dg.multi_asset(
        name="span_annotations",
        specs=[
            dg.AssetSpec(
                name,
                description=ANNOTATION_DATASETS[name].description,
                group_name=ANNOTATION_DATASETS[name].group,
                kinds={"postgres", "parquet"},
                owners=OWNERS,
                partitions_def=tenants,
                # Nothing computed feeds it: people's writes do, through the state database.
                skippable=False,
            )
            for name in (RECORDS, HISTORY)
        ],
    )
    def span_annotations(
        context: dg.AssetExecutionContext,
        state: StateDatabase,
        datasets: dg.ResourceParam[ParquetDatasetIOManager],
    ):
        if not state.configured:
            # Not a database briefly away: retrying would not help.
            raise dg.Failure(description=NO_STATE, allow_retries=False)
        try:
            exported = export_annotations(state.store(), datasets.store(), context.partition_key)
        except StateUnavailable as error:
            # Briefly away (a restart, a failover): an export is cheap to retry. Not `from`:
            # state_lost sets the cause of the retry or Failure it returns.
            raise state_lost(error, context.retry_number)  # noqa: B904
        for staged in (exported.records, exported.history):
            yield dg.MaterializeResult(
                asset_key=staged.dataset,
                metadata={
                    **published_metadata(staged),
                    HIGH_WATER_MARK: exported.high_water_mark,
                    "dagster/column_schema": column_schema(staged.dataset),
                },
            )

    return span_annotations
