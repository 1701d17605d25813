"""The daily schedule: once a day, materialise the day that just ended (UTC) for every tenant
the instance knows, one run per tenant-day so each can be rerun on its own from the UI; and the
month copies' schedule, which copies each closed month once its late data has settled. Also
what every tick shares: the jobs, run keys, and how one tenant's failure is reported."""

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import psycopg

from tagflow.assets.compaction import GROUP as COPIES_GROUP
from tagflow.assets.partitions import TENANT_DIMENSION, tenant_day_key, tenant_month_key
from tagflow.errors import InvalidName, TagflowError
from tagflow.io_managers.compaction import months_to_copy
from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.names import validate_tenant_name
from tagflow.schemas.registry import COMPUTED, EXTRACTED
from tagflow.settings import Settings

# Partitions are UTC days, so the schedule ticks in UTC too: "yesterday" is then the same day
# wherever the daemon runs, and a cron like "30 0 * * *" leaves 30 minutes for late rows.
EXECUTION_TIMEZONE = "UTC"

TRIGGER_TAG = "tagflow/trigger"

# Every dataset (and its checks) of one tenant-day: what the schedule and the sensors launch.
all_assets_job = dg.define_asset_job(
    "all_assets",
    selection=dg.AssetSelection.groups(EXTRACTED, COMPUTED),
    description="Every tagflow dataset and its checks for one tenant-day.",
)
# The read API's month copies of one tenant-month.
month_copies_job = dg.define_asset_job(
    "month_copies",
    selection=dg.AssetSelection.groups(COPIES_GROUP),
    description="The month copies of every dated dataset for one tenant-month (read API).",
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


def addressable_tenants(tenants: Sequence[str]) -> tuple[list[str], dict[str, str]]:
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
    tenants: list[str], scheduled_at: datetime, first_day: date, end_day: date | None = None
) -> list[dg.RunRequest]:
    """One run request per tenant for the UTC day before `scheduled_at`, sorted by tenant;
    none when that day is not a partition (before the first day, or from `end_day` on)."""
    day = previous_utc_day(scheduled_at)
    if day < first_day or (end_day is not None and day >= end_day):
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
    first_day, end_day = settings.start_date, settings.end_date

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
        requests = daily_run_requests(tenants, scheduled_at, first_day, end_day)
        if requests:
            return requests
        if previous_utc_day(scheduled_at) < first_day:
            return dg.SkipReason(f"{previous_utc_day(scheduled_at)} is before {first_day}")
        if end_day is not None and previous_utc_day(scheduled_at) >= end_day:
            return dg.SkipReason(
                f"{previous_utc_day(scheduled_at)} is after the partitions' last day "
                f"(TAGFLOW_END_DATE {end_day}, exclusive)"
            )
        return dg.SkipReason(f"no tenant can be scheduled; {summarise_failures(invalid)}")

    return daily_tenant_days


def build_month_copies_schedule(settings: Settings) -> dg.ScheduleDefinition:
    """A daily look for closed months whose copy is missing or behind its days (a backfill
    just ran, or late data rewrote a day): one run per tenant-month that needs one."""
    settle_days = settings.late_data_lookback_days

    @dg.schedule(
        name="month_copies_schedule",
        cron_schedule="0 3 * * *",
        execution_timezone=EXECUTION_TIMEZONE,
        job=month_copies_job,
        description=(
            "Copies each closed month (ended more than the late-data lookback ago) into one "
            "file per dataset clustered by tag, for fast reads, when its copy is missing or "
            "behind its days."
        ),
    )
    def month_copies(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        scheduled_at = context.scheduled_execution_time or datetime.now(UTC)
        tenants, invalid = addressable_tenants(
            context.instance.get_dynamic_partitions(TENANT_DIMENSION)
        )
        store = DatasetStore(settings.store)
        requests, failed = [], {}
        for tenant in tenants:
            try:
                months = months_to_copy(store, tenant, scheduled_at.date(), settle_days)
            except TENANT_ERRORS as error:
                failed[tenant] = describe_tenant_error(error)
                context.log.warning(f"tenant {tenant!r}: {failed[tenant]}")
                continue
            requests += [
                dg.RunRequest(
                    run_key=f"{tenant}|{month:%Y-%m}|{newest}",
                    partition_key=tenant_month_key(tenant, month),
                    tags={TRIGGER_TAG: "month_copies"},
                )
                for month, newest in months
            ]
        if requests:
            return requests
        return dg.SkipReason(
            "every closed month's copy is up to date"
            + (f"; {summarise_failures(failed | invalid)}" if failed or invalid else "")
        )

    return month_copies
