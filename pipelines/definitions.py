"""The tagflow code location: assets, checks and resources assembled for Dagster."""

from __future__ import annotations

import dagster as dg

from tagflow.assets import checks, derived, extraction
from tagflow.assets.resources import dataset_io_manager, source_database
from tagflow.pipelines.instance import default_executor
from tagflow.pipelines.schedules import all_assets_job, daily_schedule
from tagflow.pipelines.sensors import late_data_sensor, tenant_discovery_sensor

ASSETS = [
    extraction.tags,
    extraction.transitions,
    derived.spans,
    derived.samples_1m,
    derived.samples_1h,
    derived.samples_1d,
]


def build_definitions(
    source_url: str | None = None, store_root: str | None = None
) -> dg.Definitions:
    """Definitions with the source and store from arguments, else from the environment."""
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=checks.schema_checks,
        jobs=[all_assets_job],
        schedules=[daily_schedule],
        sensors=[tenant_discovery_sensor, late_data_sensor],
        # Launched runs (UI, schedules, backfills) spread steps over processes, or over dask
        # workers (TAGFLOW_EXECUTOR); execute_in_process (tagflow materialize) ignores this.
        executor=default_executor(),
        resources={
            "source": source_database(source_url),
            "datasets": dataset_io_manager(store_root),
        },
    )


defs = build_definitions()
