"""The daily schedule: once a day, materialise the day that just ended (UTC) for every tenant
the instance knows, one run per tenant-day so each can be rerun on its own from the UI."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from tagflow.assets.partitions import TENANT_DIMENSION, tenant_day_key
from tagflow.settings import Settings

# Partitions are UTC days, so the schedule ticks in UTC too: "yesterday" is then the same day
# wherever the daemon runs, and a cron like "30 0 * * *" leaves 30 minutes for late rows.
EXECUTION_TIMEZONE = "UTC"

TRIGGER_TAG = "tagflow/trigger"

# Every asset (and its checks) for one tenant-day: what the schedule and the tenant sensor launch.
all_assets_job = dg.define_asset_job(
    "all_assets",
    selection=dg.AssetSelection.all(),
    description="Every tagflow dataset and its checks for one tenant-day.",
)


def run_key(tenant: str, day: str) -> str:
    """The run key of one tenant-day: Dagster launches a key once per schedule or sensor, so a
    retried tick never launches the same tenant-day twice."""
    return f"{tenant}|{day}"


def previous_utc_day(moment: datetime) -> date:
    """The UTC day before the one `moment` falls in (a naive `moment` is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).date() - timedelta(days=1)


def daily_run_requests(
    tenants: list[str], scheduled_at: datetime, first_day: date
) -> list[dg.RunRequest]:
    """One run request per tenant for the UTC day before `scheduled_at`, sorted by tenant;
    none when that day precedes the first partition day."""
    day = previous_utc_day(scheduled_at)
    if day < first_day:
        return []
    key = day.isoformat()
    return [
        dg.RunRequest(
            run_key=run_key(tenant, key),
            partition_key=tenant_day_key(tenant, key),
            tags={TRIGGER_TAG: "daily"},
        )
        for tenant in sorted(tenants)
    ]


def build_daily_schedule(settings: Settings) -> dg.ScheduleDefinition:
    """The daily schedule on the settings' cron (UTC) from their first partition day."""
    first_day = settings.start_date

    @dg.schedule(
        name="daily_tenant_days",
        cron_schedule=settings.schedule_cron,
        execution_timezone=EXECUTION_TIMEZONE,
        job=all_assets_job,
        description=(
            "Materialises yesterday (UTC, relative to the tick's scheduled time) for every "
            "tenant registered as a dynamic partition; one run per tenant-day."
        ),
    )
    def daily_tenant_days(
        context: dg.ScheduleEvaluationContext,
    ) -> list[dg.RunRequest] | dg.SkipReason:
        # The scheduled time, not the clock: a tick evaluated late (daemon down, catch-up)
        # still asks for the day before its own slot.
        scheduled_at = context.scheduled_execution_time or datetime.now(UTC)
        tenants = context.instance.get_dynamic_partitions(TENANT_DIMENSION)
        if not tenants:
            return dg.SkipReason("no tenants yet: the tenant discovery sensor adds them")
        requests = daily_run_requests(tenants, scheduled_at, first_day)
        if not requests:
            return dg.SkipReason(f"{previous_utc_day(scheduled_at)} is before {first_day}")
        return requests

    return daily_tenant_days
