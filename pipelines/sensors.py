"""Tenant discovery: a sensor that registers tenants found in the source as dynamic partitions,
backfills each new tenant's past days a bounded slice per tick, and reports (never deletes)
tenants that have left the source. Late data: a sensor that reruns the recent tenant-days whose
source changed. Annotations: a sensor that exports a tenant's span annotations again when
their history grew. In each, one tenant's error is logged and reported for it, and the tick
carries on for the others."""

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import psycopg

from tagflow.assets.partitions import TENANT_DIMENSION, tenant_day_key, tenants
from tagflow.assets.resources import NO_STATE, SourceDatabase, StateDatabase
from tagflow.daystep.derived import deployment_definitions
from tagflow.errors import TagflowError
from tagflow.pipelines.schedules import (
    TENANT_ERRORS,
    TRIGGER_TAG,
    addressable_tenants,
    all_assets_job,
    describe_tenant_error,
    previous_utc_day,
    run_key,
    summarise_failures,
)
from tagflow.schemas.registry import ANNOTATED
from tagflow.settings import Settings
from tagflow.source import fingerprints
from tagflow.source.engines import source_session
from tagflow.transforms.derived.definitions import DerivedTagDefinitions, TenantDerivedTags

# Discovery needs no hurry, but a backfill advances one slice per tick.
MINIMUM_INTERVAL_SECONDS = 60


@dataclass(frozen=True)
class PendingBackfill:
    """The days of one new tenant not yet launched: `next_day` through `last_day` inclusive.

    `last_day` is fixed when the tenant is discovered (the last complete UTC day then): later
    days belong to the daily schedule, which requests them once the tenant is registered."""

    next_day: date
    last_day: date


@dataclass
class DiscoveryState:
    """What the sensor remembers between ticks (its cursor, as JSON).

    `backfill` holds the new tenants whose history is still being launched; `missing` holds
    the registered tenants that the source no longer lists, so each is reported once when it
    disappears and once when it comes back. `failed` reports, by tenant, the error of each new
    tenant the last tick could not read (`Class: message`); it is in the cursor only while a
    tenant fails, and only to be seen in the UI: every tick tries such a tenant again."""

    backfill: dict[str, PendingBackfill] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> "DiscoveryState":
        if not cursor:
            return cls()
        raw = json.loads(cursor)
        backfill = {
            tenant: PendingBackfill(date.fromisoformat(d["next"]), date.fromisoformat(d["last"]))
            for tenant, d in raw.get("backfill", {}).items()
        }
        return cls(
            backfill=backfill,
            missing=list(raw.get("missing", [])),
            failed=dict(raw.get("failed", {})),
        )

    def to_cursor(self) -> str:
        backfill = {
            tenant: {"next": p.next_day.isoformat(), "last": p.last_day.isoformat()}
            for tenant, p in self.backfill.items()
        }
        state: dict[str, object] = {"backfill": backfill, "missing": sorted(self.missing)}
        if self.failed:
            state["failed"] = self.failed
        return json.dumps(state, sort_keys=True)


@dataclass(frozen=True)
class DiscoveryTick:
    """The outcome of one tick: tenants to register, (tenant, day) pairs to launch, registered
    tenants gone from the source, and the state for the next tick."""

    new_tenants: list[str]
    backfill_days: list[tuple[str, str]]
    gone: list[str]
    state: DiscoveryState


def plan_discovery(
    source_tenants: Sequence[str],
    registered: Sequence[str],
    state: DiscoveryState,
    first_day: date,
    last_complete_day: date,
    days_per_tick: int,
    first_days: Mapping[str, date | None] | None = None,
    failed: Mapping[str, str] | None = None,
) -> DiscoveryTick:
    """Compare the source's tenants with the registered ones and pick this tick's backfill.

    A new tenant is queued from its first day with rows (`first_days`; never before
    `first_day`; a tenant without rows is not queued) through
    `last_complete_day`; queued tenants are served in name order, `days_per_tick` tenant-days
    in all, so one tenant's history completes before the next one's starts. A queued tenant
    that leaves the source is dropped from the queue.

    A new tenant in `failed` (its first row could not be read; the error by tenant) is neither
    registered nor queued, since its backfill could not start where its history does: it stays
    new, so the next tick tries it again, and the state reports it."""
    failed = dict(failed or {})
    in_source = set(source_tenants)
    new_tenants = sorted(in_source - set(registered) - set(failed))
    gone = sorted(set(registered) - in_source)

    queue = {t: p for t, p in state.backfill.items() if t in in_source}
    for tenant in new_tenants:
        start = first_day
        if first_days is not None:
            first_row_day = first_days.get(tenant)
            if first_row_day is None:
                continue
            start = max(start, first_row_day)
        queue[tenant] = PendingBackfill(start, last_complete_day)

    chosen: list[tuple[str, str]] = []
    remaining: dict[str, PendingBackfill] = {}
    for tenant in sorted(queue):
        day, last_day = queue[tenant].next_day, queue[tenant].last_day
        while day <= last_day and len(chosen) < days_per_tick:
            chosen.append((tenant, day.isoformat()))
            day += timedelta(days=1)
        if day <= last_day:
            remaining[tenant] = PendingBackfill(day, last_day)
    return DiscoveryTick(new_tenants, chosen, gone, DiscoveryState(remaining, gone, failed))


def _utc_now() -> datetime:
    return datetime.now(UTC)


def build_tenant_discovery_sensor(
    settings: Settings, clock: Callable[[], datetime] = _utc_now
) -> dg.SensorDefinition:
    """The tenant discovery sensor. Tenant-days launched per tick (backfill_days_per_tick, over
    all tenants) bound the tick's time and the burst of runs one discovery adds to the queue;
    the rest follows on later ticks. Tests pass a fixed `clock`."""
    first_day, days_per_tick = settings.first_backfill_day, settings.backfill_days_per_tick

    def last_partition_day(yesterday: date) -> date:
        """Yesterday, or the partitions' last day when they end before (TAGFLOW_END_DATE)."""
        if settings.end_date is None:
            return yesterday
        return min(yesterday, settings.end_date - timedelta(days=1))

    @dg.sensor(
        name="tenant_discovery",
        job=all_assets_job,
        minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
        description=(
            "Registers every tenant the source lists (a schema with the three source tables) "
            "as a dynamic partition, then backfills each new tenant's days from its first row "
            f"(not before TAGFLOW_BACKFILL_FLOOR, now {first_day}) through the UTC day before its "
            "discovery (later days are the daily schedule's), at most "
            f"{days_per_tick} tenant-days per tick, continuing on later ticks through the "
            "cursor. Tenants that leave the source are reported in the log and kept: their "
            "partitions and datasets are never deleted. A new tenant that cannot be read is "
            "reported (log, cursor, skip reason) and tried again on the next tick; the others "
            "carry on."
        ),
    )
    def tenant_discovery(
        context: dg.SensorEvaluationContext, source: SourceDatabase
    ) -> dg.SensorResult:
        """Tenants already registered when the sensor first runs (by hand, or by `tagflow
        materialize`) are not backfilled: only tenants this sensor adds are. The cursor is JSON
        (see DiscoveryState); resetting it forgets pending backfills, not registered tenants."""
        state = DiscoveryState.from_cursor(context.cursor)
        registered = context.instance.get_dynamic_partitions(TENANT_DIMENSION)
        reader = source.reader()
        source_tenants = reader.list_tenants()
        new_tenants = sorted(set(source_tenants) - set(registered))
        first_days: dict[str, date | None] = {}
        failed: dict[str, str] = {}
        for tenant in new_tenants:
            try:
                first_row = reader.first_row_time(tenant)
            except TENANT_ERRORS as error:
                failed[tenant] = describe_tenant_error(error)
                context.log.warning(
                    f"tenant {tenant!r} is not registered yet: reading its first row time "
                    f"failed ({failed[tenant]}); it is tried again on the next tick"
                )
                continue
            first_days[tenant] = None if first_row is None else first_row.date()
        tick = plan_discovery(
            source_tenants,
            registered,
            state,
            first_day,
            last_partition_day(previous_utc_day(clock())),
            days_per_tick,
            first_days=first_days,
            failed=failed,
        )
        for tenant in sorted(set(tick.gone) - set(state.missing)):
            context.log.warning(
                f"tenant {tenant!r} is no longer in the source; its partitions and datasets "
                "are kept (remove the dynamic partition by hand to stop scheduling it)"
            )
        for tenant in sorted(set(state.missing) & set(source_tenants)):
            context.log.info(f"tenant {tenant!r} is back in the source")
        if tick.new_tenants:
            context.log.info(f"new tenants: {', '.join(tick.new_tenants)}")

        requests = [
            dg.RunRequest(
                run_key=run_key(tenant, day),
                partition_key=tenant_day_key(tenant, day),
                tags={TRIGGER_TAG: "tenant_backfill"},
            )
            for tenant, day in tick.backfill_days
        ]
        adds = [tenants.build_add_request(tick.new_tenants)] if tick.new_tenants else []
        skip = None
        if not requests and not adds:
            skip = "no new tenants and no backfill pending"
            if failed:
                skip += f"; {summarise_failures(failed)}"
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=adds,
            cursor=tick.state.to_cursor(),
            skip_reason=skip,
        )

    return tenant_discovery


LATE_DATA_INTERVAL_SECONDS = 600
DATA_VERSION_TAG = "dagster/data_version"


def recorded_source_versions(instance: dg.DagsterInstance, partitions: list[str]) -> dict[str, str]:
    """The source fingerprint the latest `transitions` materialisation of each partition was
    built from (its data version), by partition key; partitions never materialised are absent.

    One query for all of them (the event log indexes data-version tags by partition, which is
    how Dagster reads data versions itself): a query per tenant-day took 3.5 s of a tick at
    50 tenants × 7 days."""
    latest = instance.event_log_storage.get_latest_tags_by_partition(
        dg.AssetKey("transitions"),
        dg.DagsterEventType.ASSET_MATERIALIZATION,
        [DATA_VERSION_TAG],
        asset_partitions=partitions,
    )
    return {key: tags[DATA_VERSION_TAG] for key, tags in latest.items() if DATA_VERSION_TAG in tags}


def late_run_requests(
    conn: psycopg.Connection,
    tenant: str,
    days: list[tuple[date, str]],
    recorded: Mapping[str, str],
    derived: TenantDerivedTags | None = None,
) -> list[dg.RunRequest]:
    """A run request for each materialised day of `tenant` ((day, partition key) pairs) whose
    source fingerprint differs now from the data version its transitions were built from.
    With the tenant's `derived` tags, a changed definition changes the version of exactly the
    days where the tag can have a value (DESIGN §8), so those days rerun."""
    requests = []
    for day, key in days:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        end = start + timedelta(days=1)
        current = fingerprints.day_fingerprint(conn, tenant, start, end, derived)
        if current.version != recorded[key]:
            requests.append(
                dg.RunRequest(
                    # One run per new source state, however often the sensor ticks.
                    run_key=f"{run_key(tenant, day.isoformat())}|{current.version}",
                    partition_key=tenant_day_key(tenant, day.isoformat()),
                    tags={TRIGGER_TAG: "late_data", "tagflow/source_version": current.version},
                )
            )
    return requests


def build_late_data_sensor(
    settings: Settings,
    clock: Callable[[], datetime] = _utc_now,
    derived: DerivedTagDefinitions | None = None,
) -> dg.SensorDefinition:
    """The late-data sensor over the last late_data_lookback_days complete days; tests pass a
    fixed `clock`. `derived`: the deployment's derived tags (default: the settings' file)."""
    lookback_days = settings.late_data_lookback_days
    if derived is None:
        derived = deployment_definitions(settings)

    @dg.sensor(
        name="late_data",
        job=all_assets_job,
        minimum_interval_seconds=LATE_DATA_INTERVAL_SECONDS,
        description=(
            "Re-fingerprints, for every tenant, the last "
            f"{lookback_days} complete UTC days in the source (the day's rows, the carry-in "
            "with its run start, and the tag list, checksummed in SQL) and re-materialises "
            "each materialised tenant-day whose fingerprint differs from the data version "
            "its transitions were built from. A late row changes its own day and every later "
            "day whose carry-in or run start it changes, so all of those rerun. A tenant "
            "that cannot be read is reported (log, skip reason) and checked again on the next "
            "tick; the others carry on."
        ),
    )
    def late_data(
        context: dg.SensorEvaluationContext, source: SourceDatabase
    ) -> list[dg.RunRequest] | dg.SkipReason:
        last_day = previous_utc_day(clock())
        days = sorted(last_day - timedelta(days=n) for n in range(lookback_days))
        keys = {
            (tenant, day): str(tenant_day_key(tenant, day.isoformat()))
            for tenant in sorted(context.instance.get_dynamic_partitions(TENANT_DIMENSION))
            for day in days
        }
        recorded = recorded_source_versions(context.instance, list(keys.values()))
        materialised: dict[str, list[tuple[date, str]]] = {}
        for (tenant, day), key in keys.items():
            # Never materialised: the schedule or a backfill owns it.
            if key in recorded:
                materialised.setdefault(tenant, []).append((day, key))
        if not materialised:
            return dg.SkipReason("every recent tenant-day matches its source fingerprint")
        requests: list[dg.RunRequest] = []
        failed: dict[str, str] = {}
        # Pooled sessions (source.engines), reused across tenants and ticks (a new connection
        # per tenant-day took 3.9 s of a tick at 50 tenants × 7 days); one that a tenant's
        # error broke is closed, not reused. A session that cannot be opened fails the tick:
        # the source is down for every tenant alike.
        url = source.reader().resolved_url()
        for tenant, tenant_days in materialised.items():
            with source_session(url) as conn:
                try:
                    requests += late_run_requests(
                        conn, tenant, tenant_days, recorded, derived.for_tenant(tenant)
                    )
                except TENANT_ERRORS as error:
                    failed[tenant] = describe_tenant_error(error)
                    context.log.warning(
                        f"tenant {tenant!r} is skipped this tick: fingerprinting its recent "
                        f"days failed ({failed[tenant]}); it is checked again on the next tick"
                    )
        if requests:
            return requests
        if failed:
            return dg.SkipReason(
                "every recent tenant-day of the other tenants matches its source fingerprint; "
                + summarise_failures(failed)
            )
        return dg.SkipReason("every recent tenant-day matches its source fingerprint")

    return late_data


ANNOTATIONS_INTERVAL_SECONDS = 60

# Both annotation datasets of one tenant.
annotations_job = dg.define_asset_job(
    "annotation_exports",
    selection=dg.AssetSelection.groups(ANNOTATED),
    description="The span annotations and their history of one tenant, as Parquet.",
)


def marks_from_cursor(cursor: str | None) -> dict[str, int]:
    """The annotations sensor's cursor: per tenant, the high-water mark last exported."""
    return {tenant: int(mark) for tenant, mark in json.loads(cursor or "{}").items()}


def moved_marks(marks: Mapping[str, int], exported: Mapping[str, int]) -> dict[str, int]:
    """The tenants (with their mark now) whose mark differs from the one last exported; a
    tenant never exported counts as exported at 0 (no change yet: nothing to export)."""
    return {t: mark for t, mark in sorted(marks.items()) if mark != exported.get(t, 0)}


def build_annotations_sensor() -> dg.SensorDefinition:
    """The sensor that keeps each tenant's annotation datasets fresh."""

    @dg.sensor(
        name="span_annotations_changed",
        job=annotations_job,
        minimum_interval_seconds=ANNOTATIONS_INTERVAL_SECONDS,
        description=(
            "Reads, for every registered tenant, the high-water mark of its span annotations' "
            "history in the state database and exports the tenant's span_annotations and "
            "span_annotation_history again when the mark moved since the last export it "
            "requested (one run per new mark). A tenant that cannot be read is reported (log, "
            "skip reason) and read again on the next tick; the others carry on. Without a "
            "state database (TAGFLOW_STATE_URL) it skips."
        ),
    )
    def span_annotations_changed(
        context: dg.SensorEvaluationContext, state: StateDatabase
    ) -> dg.SensorResult:
        if not state.configured:
            return dg.SensorResult(skip_reason=NO_STATE)
        exported = marks_from_cursor(context.cursor)
        registered = context.instance.get_dynamic_partitions(TENANT_DIMENSION)
        valid, failed = addressable_tenants(registered)
        marks: dict[str, int] = {}
        try:
            annotations = state.store()
            # One probe first: a database that is down fails every tenant alike, and each
            # tenant would wait for its own connect timeout.
            annotations.high_water_mark()
        except TagflowError as error:
            return dg.SensorResult(
                skip_reason=f"the state database could not be read ({describe_tenant_error(error)})"
            )
        for tenant in valid:
            try:
                marks[tenant] = annotations.high_water_mark(tenant)
            except TENANT_ERRORS as error:
                failed[tenant] = describe_tenant_error(error)
        for tenant in sorted(failed):
            context.log.warning(
                f"tenant {tenant!r} is skipped this tick: reading its annotations' high-water "
                f"mark failed ({failed[tenant]}); it is read again on the next tick"
            )
        moved = moved_marks(marks, exported)
        requests = [
            dg.RunRequest(
                # One run per new mark, however often the sensor ticks.
                run_key=f"{tenant}|annotations|{mark}",
                partition_key=tenant,
                tags={TRIGGER_TAG: "annotations"},
            )
            for tenant, mark in moved.items()
        ]
        skip = None
        if not requests:
            skip = "no tenant's annotations changed since their last export"
            if failed:
                skip += f"; {summarise_failures(failed)}"
        cursor = json.dumps({**exported, **moved}, sort_keys=True)
        return dg.SensorResult(run_requests=requests, cursor=cursor, skip_reason=skip)

    return span_annotations_changed
