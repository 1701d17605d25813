"""The tagflow code location: assets, checks, jobs, schedules, sensors, executor and resources
assembled from the deployment's settings. Dagster loads `defs` (workspace.yaml), which reads
the settings from the environment when it is called, not when this module is imported."""

from __future__ import annotations

import dagster as dg

from tagflow.assets.annotations import annotation_assets
from tagflow.assets.checks import schema_checks
from tagflow.assets.compaction import compaction_assets
from tagflow.assets.day import day_assets
from tagflow.assets.partitions import TenantDays, TenantMonths
from tagflow.assets.resources import resources
from tagflow.daystep.derived import deployment_definitions
from tagflow.errors import TagflowError
from tagflow.pipelines.executor import launched_run_executor
from tagflow.pipelines.schedules import (
    all_assets_job,
    build_daily_schedule,
    build_month_copies_schedule,
    month_copies_job,
)
from tagflow.pipelines.sensors import (
    annotations_job,
    build_annotations_sensor,
    build_late_data_sensor,
    build_tenant_discovery_sensor,
)
from tagflow.settings import EMBEDDED_SOURCE, Settings

NO_SOURCE = (
    "no source database is configured: set TAGFLOW_SOURCE_URL to its URL "
    f"(postgresql://user:password@host/db), or to `{EMBEDDED_SOURCE}` for the demo's server"
)


def build_definitions(settings: Settings) -> dg.Definitions:
    """The code location for `settings`; a clear error when they name no source database."""
    if settings.source_url is None:
        raise TagflowError(NO_SOURCE)
    partitions = TenantDays.of(settings)
    # Loaded once, now: a broken derived tags file stops the code location with its error.
    derived = deployment_definitions(settings)
    return dg.Definitions(
        assets=[
            day_assets(partitions, derived, settings.freshness_hours),
            compaction_assets(TenantMonths.of(settings)),
            annotation_assets(),
        ],
        asset_checks=[schema_checks(partitions)],
        jobs=[all_assets_job, month_copies_job, annotations_job],
        schedules=[build_daily_schedule(settings), build_month_copies_schedule(settings)],
        sensors=[
            build_tenant_discovery_sensor(settings),
            build_late_data_sensor(settings, derived=derived),
            build_annotations_sensor(),
        ],
        executor=launched_run_executor(settings),
        resources=resources(settings),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
