"""The daily schedule: once a day, materialise the day that just ended (UTC) for every tenant
the instance knows, one run per tenant-day so each can be rerun on its own from the UI. Also
what every tick shares: the job, run keys, and how one tenant's failure is reported."""

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import psycopg

from tagflow.assets.partitions import TENANT_DIMENSION, tenant_day_key
from tagflow.errors import InvalidName, TagflowError
from tagflow.names import validate_tenant_name
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


# The errors one tenant can raise in a tick: tagflow's own, and the driver's for what only that
# tenant's tables hold (a dropped column, a time psycopg cannot convert). A tick logs and reports
# them for the tenant and carries on; anything else is a bug of tagflow and fails the tick.
TENANT_ERRORS: tuple[type[Exception], ...] = (TagflowError, psycopg.Error)

# A tick's report lists a few tenants in full; the log names every one.
_REPORTED_TENANTS = 5
_MESSAGE_CHARS = 300


def describe_tenant_error(error: Exception) -> str:
    """`Class: message` of one tenant's error, fit for a tick's log, cursor and skip reason.

    tagflow's messages are written to be shown. Of a driver error only the server's primary
    message is kept: its full text quotes the statement, and a failed connection's names the
    host."""
    if isinstance(error, TagflowError):
        message = str(error)
    elif isinstance(error, psycopg.OperationalError):
        message = "the connection to the source database failed"
    elif isinstance(error, psycopg.Error) and error.diag.message_primary:
        message = error.diag.message_primary
    else:
        # Raised by the driver itself (a value it cannot convert): no statement in it.
        message = (str(error).splitlines() or [""])[0]
    if len(message) > _MESSAGE_CHARS:
        message = message[: _MESSAGE_CHARS - 1] + "…"
    return f"{type(error).__name__}: {message}"


def summarise_failures(failures: Mapping[str, str]) -> str:
    """One line for a skip reason: how many tenants failed, the first few with their error."""
    shown = [f"{tenant} ({failures[tenant]})" for tenant in sorted(failures)[:_REPORTED_TENANTS]]
    more = len(failures) - len(shown)
    count = f"{len(failures)} tenant{'s' if len(failures) > 1 else ''} failed"
    return f"{count}: {'; '.join(shown)}" + (f"; and {more} more" if more else "")


def previous_utc_day(moment: datetime) -> date:
    """The UTC day before the one `moment` falls in (a naive `moment` is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).date() - timedelta(days=1)


def addressable_tenants(tenants: list[str]) -> tuple[list[str], dict[str, str]]:
    """Split registered tenants into those a run can address, sorted, and the others with why.

    A dynamic partition may be added by hand under any name, but a run reads a tenant only by
    a valid tenant name, and a name with `|` does not even survive the "day|tenant" key: Dagster
    failed the whole tick on it, so no tenant got its run."""
    valid: list[str] = []
    invalid: dict[str, str] = {}
    for tenant in sorted(tenants):
        try:
            valid.append(validate_tenant_name(tenant))
        except InvalidName as error:
            invalid[tenant] = describe_tenant_error(error)
    return valid, invalid


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
        registered = context.instance.get_dynamic_partitions(TENANT_DIMENSION)
        if not registered:
            return dg.SkipReason("no tenants yet: the tenant discovery sensor adds them")
        tenants, invalid = addressable_tenants(registered)
        for tenant, error in invalid.items():
            context.log.warning(
                f"tenant {tenant!r} is not scheduled: its partition name cannot be a tenant "
                f"({error}); delete that dynamic partition and register the tenant by its name"
            )
        requests = daily_run_requests(tenants, scheduled_at, first_day)
        if requests:
            return requests
        if previous_utc_day(scheduled_at) < first_day:
            return dg.SkipReason(f"{previous_utc_day(scheduled_at)} is before {first_day}")
        return dg.SkipReason(f"no tenant can be scheduled; {summarise_failures(invalid)}")

    return daily_tenant_days
