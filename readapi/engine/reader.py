"""Every read of one tenant as an Arrow table: the range's days are split by the coverage
index into materialised days (read from the datasets) and missing days (computed from the
source with the assets' transforms), then assembled. Both transports of the client end here:
the local one calls it directly, the HTTP service calls it for the key's tenant."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tagflow.errors import (
    CorruptPartition,
    InvalidTimeRange,
    MissingPartition,
    NotMaterialised,
    SourceUnavailable,
    StateSchemaTooNew,
    StateUnavailable,
    UnknownTag,
    UnknownTenant,
)
from tagflow.names import validate_tag_name, validate_tenant_name
from tagflow.readapi.engine.annotated import (
    annotation_spans,
    merge_annotations,
    outside_computed,
    without_annotations,
)
from tagflow.readapi.engine.assembly import (
    BucketGrid,
    aligned_segments,
    carry_in_at,
    counter_rate,
    derivative,
    in_intervals,
    materialised_source,
    stitch_spans,
    wide_samples,
)
from tagflow.readapi.engine.day_products import DayProducts
from tagflow.readapi.engine.pools import SharedPool
from tagflow.readapi.engine.stored import MixedPublishes, StoredProducts
from tagflow.readapi.engine.unreadable_days import answer_around_unreadable_days
from tagflow.readapi.models import ANNOTATED_SPAN_LIST, METRIC_DATA, SPAN_LIST, TAG_LIST
from tagflow.readapi.query import (
    NUMERIC_ONLY,
    BucketQuery,
    MetricDataQuery,
    Query,
    Sampling,
    SpanAnnotationsQuery,
    SpansQuery,
    TagsQuery,
)
from tagflow.schemas.arrow import SAMPLES, SAMPLES_STR
from tagflow.schemas.registry import WIDTHS, samples_name
from tagflow.time_range import ONE_US, TimeRange, day_bounds, to_us
from tagflow.transforms.columns import NO_TIME, time_us
from tagflow.transforms.rollup import in_tag_bucket_order, rollup
from tagflow.transforms.samples import samples

if TYPE_CHECKING:
    from tagflow.annotations import AnnotationStore
    from tagflow.readapi.engine.read_engine import ReadEngine

# Guards against answers too large to build: days per read (buckets per call are checked by
# the query, cells and rows by the configured AnswerLimits). The service answers many callers;
# one read must not exhaust its memory.
MAX_RANGE_DAYS = 731
# Work of one transition computed into buckets against one fine sample rolled up (measured:
# about 0.6 µs against 0.2 µs a row, decoding included).
TRANSITION_COST = 3
# Days whose tag directories judge that cost. A year of days is 730 footers, more than the
# footer cache holds, and parsing them cost 2 s a call; a few days spread over the range
# judge a ratio of rows as well.
COST_SAMPLE_DAYS = 8
# A read that met two publishes of a day reads again (every file) until the republish is
# complete, for at most this long: the day step's publish of a day's files took 0.15-0.27 s
# under Dagster (2 loaded cores). Past it the publish is taken as stopped part-way and the
# day as unreadable.
REPUBLISH_WAIT_S = 3.0
_REPUBLISH_POLL_S = 0.05

T = TypeVar("T")

# Stored day partitions are read concurrently.
DAY_READERS = SharedPool(4, "tagflow-read")


def map_days(
    plan: _Plan,
    products: Callable[[date], DayProducts],
    read: Callable[[DayProducts, date], T],
    days: Sequence[date] | None = None,
) -> list[T]:
    """`read` of every day of the plan (or of `days`, some of them), in day order: stored days
    concurrently, source days one after the other (they share one memo and the production
    database)."""
    days = plan.days if days is None else days
    stored = [day for day in days if day in plan.stored]
    results: dict[date, T] = {}
    if len(stored) > 1:
        results.update(
            zip(stored, DAY_READERS.get().map(lambda d: read(products(d), d), stored), strict=True)
        )
    for day in days:
        if day not in results:
            results[day] = read(products(day), day)
    return [results[day] for day in days]


@dataclass(frozen=True)
class _Plan:
    """Where each day of a read comes from."""

    time_range: TimeRange
    days: list[date]
    stored: frozenset[date]
    missing: list[date]

    @property
    def start_us(self) -> int:
        return to_us(self.time_range.start)

    @property
    def end_us(self) -> int:
        return to_us(self.time_range.end)

    def day_window_us(self, day: date) -> tuple[int, int]:
        """The part of the range inside `day`."""
        day_start, day_end = day_bounds(day)
        return max(self.start_us, to_us(day_start)), min(self.end_us, to_us(day_end))

    def covers(self, day: date) -> bool:
        """Whether the range holds all of `day`."""
        day_start, day_end = day_bounds(day)
        return self.start_us <= to_us(day_start) and to_us(day_end) <= self.end_us

    def inside(self, table: pa.Table, column: str) -> pa.Table:
        """The rows of `table` whose `column` lies in the range; the table itself when all do
        (a range of whole days: a filter would copy every column of every row)."""
        times = time_us(table.column(column))
        inside = (times >= self.start_us) & (times < self.end_us)
        return table if bool(inside.all()) else table.filter(pa.array(inside))


def describe_days(days: Sequence[date]) -> str:
    """'2026-03-04..2026-03-06, 2026-03-09' — consecutive days folded into ranges."""
    parts: list[str] = []
    run_start = previous = None
    for day in sorted(days):
        if previous is not None and day == previous + timedelta(days=1):
            previous = day
            continue
        if run_start is not None:
            parts.append(_day_run(run_start, previous))
        run_start = previous = day
    if run_start is not None:
        parts.append(_day_run(run_start, previous))
    shown = ", ".join(parts[:6]) + (", …" if len(parts) > 6 else "")
    return f"{shown} ({len(days)} day{'s' if len(days) != 1 else ''})"


def _day_run(first: date, last: date | None) -> str:
    return first.isoformat() if last in (None, first) else f"{first}..{last}"


class TenantReader:
    """Reads of one tenant over the engine's store, with its source fallback (if any) for days
    not materialised."""

    def __init__(self, engine: ReadEngine, tenant: str) -> None:
        self.tenant = validate_tenant_name(tenant)
        self._engine = engine
        self._store = engine.store
        self._coverage = engine.coverage
        self._catalogue = engine.catalogue
        self._fallback = engine.fallback
        self._limits = engine.config.answer_limits
        self._max_source_days = engine.config.max_source_days

    # ------------------------------------------------------------------ planning

    def _require_tenant(self, allow_source: bool) -> None:
        if self._catalogue.stored(self.tenant) is not None:
            return
        if allow_source and self._fallback is not None:
            self._catalogue.source(self.tenant)  # UnknownTenant if the source lacks it too
            return
        raise UnknownTenant(
            f"unknown tenant {self.tenant!r}: nothing is materialised for it"
            + ("" if self._fallback is not None else " and no source database is configured")
        )

    def default_range(self, allow_source: bool) -> TimeRange:
        """The range of a call that gives none: from the first materialised day (at most
        MAX_RANGE_DAYS back) to now when the source may fill the rest (and the rest is short
        enough to compute), else to the end of the last materialised day."""
        self._require_tenant(allow_source)
        days = self._coverage.days(self.tenant)
        if not days:
            raise InvalidTimeRange(
                "no time range was given and nothing is materialised for this tenant yet; "
                "pass time_range=(start, end)"
            )
        start = day_bounds(min(days))[0]
        end = day_bounds(max(days))[1]
        if allow_source and self._fallback is not None:
            now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
            if now - end <= timedelta(days=self._max_source_days - 1):
                end = max(end, now)
        # A long history: the default is its most recent MAX_RANGE_DAYS days.
        last_day = (end - ONE_US).date()
        start = max(start, day_bounds(last_day - timedelta(days=MAX_RANGE_DAYS - 1))[0])
        return TimeRange(start, end)

    def _plan(self, time_range: TimeRange | None, allow_source: bool) -> _Plan:
        time_range = time_range or self.default_range(allow_source)
        self._require_tenant(allow_source)
        days = time_range.days()
        if len(days) > MAX_RANGE_DAYS:
            raise InvalidTimeRange(
                f"the range touches {len(days)} days; at most {MAX_RANGE_DAYS} per read: "
                "split it into several reads"
            )
        stored, missing = self._coverage.split(self.tenant, days)
        if missing:
            if not allow_source:
                raise NotMaterialised(
                    f"not materialised for tenant {self.tenant!r}: {describe_days(missing)}; "
                    "materialise those days, or allow source fallback (allow_source=True)"
                )
            if self._fallback is None:
                raise SourceUnavailable(
                    f"not materialised for tenant {self.tenant!r}: {describe_days(missing)}, "
                    "and no source database is configured to compute them "
                    "(set TAGFLOW_SOURCE_URL); narrow the range to materialised days"
                )
            if len(missing) > self._max_source_days:
                raise NotMaterialised(
                    f"not materialised for tenant {self.tenant!r}: {describe_days(missing)}; "
                    f"at most {self._max_source_days} days are computed from the source per "
                    "read: materialise them, or narrow the range"
                )
        return _Plan(time_range, days, frozenset(stored), missing)

    def _tag_table(self, use_source: bool) -> pa.Table:
        """The TAGS rows to answer with: the source's when some days come from the source (it
        is fresher), plus stored tags the source no longer lists; else the stored snapshot."""
        stored = self._catalogue.stored(self.tenant)
        if not use_source:
            if stored is None:
                raise UnknownTenant(f"unknown tenant {self.tenant!r}")
            return stored
        source = self._catalogue.source(self.tenant)
        if stored is None:
            return source
        # By id: a tag renamed since the snapshot is the source's row, under its new name.
        only_stored = stored.filter(
            pc.invert(pc.is_in(stored.column("tag_id"), value_set=source.column("tag_id")))
        )
        if only_stored.num_rows == 0:
            return source
        return pa.concat_tables([source, only_stored]).sort_by("tag_name")

    def _resolve_tags(
        self, tag_names: Sequence[str] | None, plan: _Plan, allow_source: bool
    ) -> tuple[pa.Table, list[str], pa.Table | None]:
        """(TAGS rows of the asked tags, their names in the asked order, the selection to
        pass to day products: None when every tag is asked for)."""
        use_source = bool(plan.missing)
        table = self._tag_table(use_source)
        if tag_names is None:
            return table, table.column("tag_name").to_pylist(), None
        names = list(dict.fromkeys(validate_tag_name(name) for name in tag_names))
        unknown = _not_in(names, table.column("tag_name"))
        if unknown and not use_source and allow_source and self._fallback is not None:
            # A tag created after the last materialisation: the source knows it.
            table = self._tag_table(True)
            unknown = _not_in(names, table.column("tag_name"))
        if unknown:
            shown = ", ".join(repr(name[:80]) for name in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise UnknownTag(
                f"unknown tag{'s' if len(unknown) > 1 else ''} {shown}{more} for this tenant; "
                "get_tags() lists the valid names"
            )
        wanted = pa.array(names, type=pa.string())
        chosen = table.filter(pc.is_in(table.column("tag_name"), value_set=wanted))
        return chosen, names, chosen

    def _days_of(
        self, plan: _Plan, tags: pa.Table, stored: StoredProducts | None = None
    ) -> Callable[[date], DayProducts]:
        """Day products of `plan`; stored days are named by `tags` (the whole catalogue the
        read answers with, or the tags it asked for), or read by `stored` when given."""
        stored = stored or self._stored(plan, tags)
        source = None
        if plan.missing:
            assert self._fallback is not None
            source = self._fallback.products(self.tenant, tags)

        def products(day: date) -> DayProducts:
            return stored if day in plan.stored or source is None else source

        return products

    def _stored(self, plan: _Plan, tags: pa.Table) -> StoredProducts:
        return StoredProducts(
            self._store, self.tenant, tags, self._limits.row_budget(), sorted(plan.stored)
        )

    # ------------------------------------------------------------------ reads

    def read(self, query: Query) -> pa.Table:
        """The answer to `query` as Arrow: TAG_LIST, SPAN_LIST, METRIC_DATA, or a wide table
        of `time` + one column per tag for bucketed reads.

        If a partition vanished under the read (a rerun replacing files, a cleanup), the
        coverage is refreshed and the read runs once more, answering that day from the source.
        A stored day whose file cannot be read is answered from the source too (see
        unreadable_days), or is the read's CorruptPartition where the source cannot be used."""
        try:
            return self._answer_readable(query)
        except MissingPartition as error:
            if isinstance(error, NotMaterialised):
                raise
            self._coverage.invalidate(self.tenant)
            self._catalogue.invalidate(self.tenant)
            return self._answer_readable(query)

    def _answer_readable(self, query: Query) -> pa.Table:
        source_allowed = self._fallback is not None and query.allow_source
        return answer_around_unreadable_days(
            self._answer_one_publish, query, self.tenant, self._coverage, source_allowed
        )

    def _answer_one_publish(self, query: Query) -> pa.Table:
        """`_answer(query)` with each stored day's datasets from one publish of that day. A
        read that met two (a republish under way) is read again, whole, until it meets one;
        a day still mixed after REPUBLISH_WAIT_S (a publish stopped part-way) is the read's
        CorruptPartition, answered from the source where it may be (unreadable_days)."""
        deadline = time.monotonic() + REPUBLISH_WAIT_S
        while True:
            try:
                return self._answer(query)
            except MixedPublishes as mixed:
                if time.monotonic() >= deadline:
                    raise CorruptPartition(
                        f"the stored {mixed.dataset} of tenant {self.tenant!r} on "
                        f"{mixed.day.isoformat()} is of another publish than the day's other "
                        "datasets (its rerun stopped part-way); materialise that day again",
                        mixed.dataset,
                        self.tenant,
                        mixed.day,
                    ) from None
            time.sleep(_REPUBLISH_POLL_S)

    def _answer(self, query: Query) -> pa.Table:
        match query:
            case TagsQuery():
                return self._tags(query.time_range, query.allow_source)
            case SpansQuery():
                return self._spans(query)
            case SpanAnnotationsQuery():
                return self._span_annotations(query)
            case MetricDataQuery():
                return self._metric_data(query)
            case BucketQuery(sampling=Sampling.COUNTER_RATE):
                return self._counter_rate(query)
            case BucketQuery(sampling=Sampling.DERIVATIVE):
                return derivative(self._samples(query), query.width // ONE_US)
            case BucketQuery():
                return self._samples(query)
        raise TypeError(f"not a read query: {type(query).__name__}")

    def _tags(self, time_range: TimeRange | None, allow_source: bool) -> pa.Table:
        """TAG_LIST of the tags with a transition in the range (all tags without a range),
        sorted by name. Whole materialised days from their tag directories, the parts of
        others from the sample counts (the coarsest width that fits), only sub-minute edges
        from transitions."""
        if time_range is None:
            self._require_tenant(allow_source)
            use_source = self._catalogue.stored(self.tenant) is None
            return self._tag_table(use_source).select(TAG_LIST.names).cast(TAG_LIST)
        plan = self._plan(time_range, allow_source)
        table = self._tag_table(bool(plan.missing))
        stored = self._stored(plan, table)
        products = self._days_of(plan, table, stored)

        def active_in(day_products: DayProducts, day: date) -> np.ndarray:
            lo, hi = plan.day_window_us(day)
            if day in plan.stored:
                return self._active_in_stored_day(day_products, day, lo, hi)
            rows = day_products.transitions(day, None, ["tag_id", "time"])
            return _ids_where(rows, in_intervals(time_us(rows.column("time")), [(lo, hi)]))

        # A whole stored day's tags are those its transitions file lists in its tag directory
        # (or its month copy, for a read of every day the copy holds): nothing decoded. The
        # other days, and files without a directory, a day at a time.
        whole = [day for day in plan.days if day in plan.stored and plan.covers(day)]
        listed, left = stored.tags_with_rows("transitions", whole)
        rest = (set(plan.days) - set(whole)) | set(left)
        found = [listed, *map_days(plan, products, active_in, sorted(rest))]
        # Tag ids, not names: a set of integers is built and merged many times faster.
        active = np.unique(np.concatenate([np.empty(0, np.int32), *found])).astype(np.int32)
        keep = pc.is_in(table.column("tag_id"), value_set=pa.array(active, pa.int32()))
        return table.filter(keep).select(TAG_LIST.names).cast(TAG_LIST)

    @staticmethod
    def _active_in_stored_day(products: DayProducts, day: date, lo: int, hi: int) -> np.ndarray:
        active = []
        for width_name, intervals in aligned_segments(lo, hi).items():
            if width_name is None:
                rows = products.transitions(day, None, ["tag_id", "time"])
                active.append(
                    _ids_where(rows, in_intervals(time_us(rows.column("time")), intervals))
                )
                continue
            for string in (False, True):
                rows = products.samples(
                    width_name, string, day, None, ["tag_id", "bucket_start", "count"]
                )
                counted = rows.column("count").to_numpy() > 0
                inside = in_intervals(time_us(rows.column("bucket_start")), intervals)
                active.append(_ids_where(rows, counted & inside))
        return np.concatenate([np.empty(0, np.int32), *active])

    def _spans(self, query: SpansQuery) -> pa.Table:
        """Runs of the tag intersecting the range, one per run across days, newest first, with
        their annotations where a state database is configured (annotated.merge_annotations)."""
        plan = self._plan(query.time_range, query.allow_source)
        tags, _, chosen = self._resolve_tags([query.tag_name], plan, query.allow_source)
        stored = self._stored(plan, tags)
        products = self._days_of(plan, tags, stored)
        pieces = self._range_rows(
            "spans", plan, stored, products, chosen, lambda p, day: p.spans(day, chosen)
        )
        if self._engine.config.state_url is None:
            stitched = stitch_spans(pieces, plan.start_us, plan.end_us)
        else:
            stitched = self._annotated_spans(query, plan, pieces)
        # Clamped: Arrow's slice takes a C long, and any limit past the end means all.
        limit = query.limit
        return stitched if limit is None else stitched.slice(0, min(limit, stitched.num_rows))

    def _annotated_spans(self, query: SpansQuery, plan: _Plan, pieces: pa.Table) -> pa.Table:
        """The spans with the annotation layer merged in: one query of the state database. If
        it cannot be read, the computed spans alone, marked unavailable (never silently)."""
        days_lo = to_us(day_bounds(plan.days[0])[0])
        days_hi = to_us(day_bounds(plan.days[-1])[1])
        # Unclipped to the range: a correction may move a span of the read's days into it.
        computed = stitch_spans(pieces, days_lo, days_hi)
        # Newest first: the last span began first.
        oldest = computed.column("raw_begin_at")[-1:].cast(pa.int64()).to_pylist()
        since = min(plan.start_us, *oldest)
        try:
            store = self._engine.annotations
            assert store is not None  # a state_url is configured
            found = store.for_read(
                self.tenant,
                plan.time_range.start,
                plan.time_range.end,
                computed_since=_at(since),
            )
        except (StateUnavailable, StateSchemaTooNew):
            return without_annotations(stitch_spans(pieces, plan.start_us, plan.end_us))
        mine = found.filter(pc.equal(found.column("tag_name"), query.tag_name))
        outside = outside_computed(computed.column("id"), mine, plan.start_us, plan.end_us)
        if outside.num_rows:
            computed = pa.concat_tables([computed, self._spans_of_days(outside, query)])
        return merge_annotations(computed, mine, plan.start_us, plan.end_us, query.include_hidden)

    def _spans_of_days(self, annotations: pa.Table, query: SpansQuery) -> pa.Table:
        """The computed spans (SPAN_LIST, unclipped) of annotations whose correction moved them
        into a read from other days: each read from the day it began on (its id hashes its
        begin). An end beyond that day is the one stored with the annotation. A day that cannot
        be read leaves its span out, as a detached one would be."""
        begins = time_us(annotations.column("computed_begin_at"))
        wanted = annotations.column("span_id")
        found = []
        for day in sorted({_at(us).date() for us in begins.tolist()}):
            lo, hi = day_bounds(day)
            try:
                plan = self._plan(TimeRange(lo, hi), query.allow_source)
            except (NotMaterialised, SourceUnavailable, InvalidTimeRange):
                continue
            tags, _, chosen = self._resolve_tags([query.tag_name], plan, query.allow_source)
            pieces = self._days_of(plan, tags)(day).spans(day, chosen)
            stitched = stitch_spans(pieces, to_us(lo), to_us(hi))
            found.append(stitched.filter(pc.is_in(stitched.column("id"), value_set=wanted)))
        if not found:
            return SPAN_LIST.empty_table()
        spans = pa.concat_tables(found)
        # Where the day does not know the run's end, the end stored with the annotation.
        stored_end = pc.take(
            annotations.column("computed_end_at"),
            pc.index_in(spans.column("id"), value_set=wanted),
        )
        raw_end = pc.coalesce(spans.column("raw_end_at"), stored_end)
        end = pc.coalesce(raw_end, spans.column("end_at"))
        return spans.set_column(5, "end_at", end).set_column(7, "raw_end_at", raw_end)

    def _span_annotations(self, query: SpanAnnotationsQuery) -> pa.Table:
        """The tenant's annotations as spans (annotated.annotation_spans): those whose bounds
        meet the range, or all; with `detached`, those of computed spans their day no longer
        computes. StateUnavailable if the state database cannot be read."""
        self._require_tenant(query.allow_source)
        store = self._engine.annotations
        if store is None:
            return ANNOTATED_SPAN_LIST.empty_table()
        time_range = query.time_range
        if time_range is None:
            records = store.records(self.tenant)
            start_us = end_us = None
        else:
            records = store.for_read(self.tenant, time_range.start, time_range.end)
            start_us, end_us = to_us(time_range.start), to_us(time_range.end)
        if query.detached:
            detached = self._detached_ids(store, records, query.allow_source)
            records = records.filter(pc.is_in(records.column("span_id"), value_set=detached))
        return annotation_spans(records, start_us, end_us)

    def _detached_ids(
        self, store: AnnotationStore, records: pa.Table, allow_source: bool
    ) -> pa.Array:
        """Ids of `records` that are detached: checked on the day each computed span began
        (its stored computed begin), against that day's computed spans. A day that cannot be
        read tells nothing, so its annotations are not listed as detached."""
        computed = records.filter(
            pc.and_(
                pc.equal(records.column("origin"), "computed"),
                pc.is_null(records.column("moved_to")),
            )
        )
        begins = time_us(computed.column("computed_begin_at"), null_as=NO_TIME)
        found: list[int] = []
        for day in sorted({_at(us).date() for us in begins.tolist() if us != NO_TIME}):
            lo, hi = day_bounds(day)
            try:
                plan = self._plan(TimeRange(lo, hi), allow_source)
            except (NotMaterialised, SourceUnavailable, InvalidTimeRange):
                continue
            tags = self._tag_table(bool(plan.missing))
            ids = self._days_of(plan, tags)(day).spans(day, None).column("id")
            # Imported here: it needs SQLAlchemy, which the read client's install lacks.
            from tagflow.annotations.detached import detached_span_ids

            found += detached_span_ids(store, self.tenant, lo, hi, ids.to_numpy())
        return pa.array(found, pa.int64())

    def _metric_data(self, query: MetricDataQuery) -> pa.Table:
        """Every transition of the tags (all if None) in the range, by time."""
        plan = self._plan(query.time_range, query.allow_source)
        tags, _, chosen = self._resolve_tags(query.tag_names, plan, query.allow_source)
        stored = self._stored(plan, tags)
        transitions = self._transitions(plan, stored, self._days_of(plan, tags, stored), chosen)
        table = plan.inside(transitions, "time").select(METRIC_DATA.names).cast(METRIC_DATA)
        if table.num_rows == 0:
            return table
        return table.sort_by([("time", "ascending"), ("tag_name", "ascending")])

    # ------------------------------------------------------------------ sampling

    def _grid(self, plan: _Plan, query: BucketQuery, columns: int) -> BucketGrid:
        if query.time_range is None:
            query.require_buckets_within(plan.time_range)  # a given range was checked already
        grid = BucketGrid.of(plan.start_us, plan.end_us, query.width // ONE_US, query.offset_us)
        self._limits.require_cells(grid.count, columns)
        return grid

    def _samples(self, query: BucketQuery) -> pa.Table:
        """Wide table: `time` (bucket starts of the buckets meeting the range) + one column
        per tag with the aggregate of its LOCF samples over the part of each bucket inside
        the range."""
        plan = self._plan(query.time_range, query.allow_source)
        tags, names, chosen = self._resolve_tags(query.tag_names, plan, query.allow_source)
        grid = self._grid(plan, query, len(names))
        aggregate = query.aggregate
        kind_of = dict(
            zip(
                tags.column("tag_name").to_pylist(),
                tags.column("value_kind").to_pylist(),
                strict=True,
            )
        )
        columns = [(name, kind_of.get(name) == "string") for name in names]
        need_numeric = any(not is_string for _, is_string in columns)
        need_string = any(is_string for _, is_string in columns) or (
            aggregate == "count" and any(kind_of.get(name) == "mixed" for name in names)
        )
        if aggregate in NUMERIC_ONLY:
            need_string = False
        stored = self._stored(plan, tags)
        products = self._days_of(plan, tags, stored)
        fine = materialised_source(grid.width_us, query.offset_us, plan.start_us, plan.end_us)
        if fine is not None and self._cheaper_from_transitions(plan, fine, grid, chosen):
            fine = None
        if fine is not None:
            numeric, string = self._rolled_up(
                plan, stored, products, fine, chosen, grid, query.offset, need_numeric, need_string
            )
        else:
            numeric, string = self._computed(
                plan, stored, products, tags, chosen, query.width, query.offset
            )
        numeric, string = in_tag_bucket_order(numeric), in_tag_bucket_order(string)
        return wide_samples(numeric, string, columns, aggregate, grid)

    def _cheaper_from_transitions(
        self, plan: _Plan, fine: str, grid: BucketGrid, chosen: pa.Table | None
    ) -> bool:
        """Whether computing the buckets from transitions decodes much less than rolling
        them up from the `fine` samples (15-minute buckets of tags that change every few
        minutes: 15 one-minute rows per bucket against one or two transitions). Judged from
        the stored days' tag directories, nothing decoded; both answers are exact."""
        if grid.width_us == WIDTHS[fine] // ONE_US or not plan.stored:
            return False  # the samples are read as they are: nothing to roll up
        ids = None if chosen is None else chosen.column("tag_id").to_numpy()
        samples_rows = transition_rows = 0
        for day in _spread(sorted(plan.stored), COST_SAMPLE_DAYS):
            samples_rows += (
                self._store.tag_rows(samples_name(fine, False), self.tenant, day, ids) or 0
            )
            transition_rows += self._store.tag_rows("transitions", self.tenant, day, ids) or 0
        return transition_rows * TRANSITION_COST < samples_rows

    def _rolled_up(
        self,
        plan: _Plan,
        stored: StoredProducts,
        products: Callable[[date], DayProducts],
        fine: str,
        chosen: pa.Table | None,
        grid: BucketGrid,
        offset: timedelta,
        need_numeric: bool,
        need_string: bool,
    ) -> tuple[pa.Table, pa.Table]:
        """Samples at the grid's width from the materialised `fine` width (exact roll-up)."""
        out = []
        for string, needed in ((False, need_numeric), (True, need_string)):
            schema = SAMPLES_STR if string else SAMPLES
            if not needed:
                out.append(schema.empty_table())
                continue

            def read_day(day_products: DayProducts, day: date, string: bool = string) -> pa.Table:
                return day_products.samples(fine, string, day, chosen)

            rows = self._range_rows(
                samples_name(fine, string), plan, stored, products, chosen, read_day
            )
            table = plan.inside(rows, "bucket_start")
            if grid.width_us != WIDTHS[fine] // ONE_US:
                table = rollup(table, timedelta(microseconds=grid.width_us), offset)
            out.append(table)
        return out[0], out[1]

    def _window_inputs(
        self,
        plan: _Plan,
        stored: StoredProducts,
        products: Callable[[date], DayProducts],
        tags: pa.Table,
        chosen: pa.Table | None,
    ) -> tuple[pa.Table, pa.Table]:
        """(transitions inside the range, carry-in at the range start) of the tags."""
        first_day = plan.days[0]
        transitions = self._transitions(plan, stored, products, chosen)
        carry_in = products(first_day).carry_in(first_day, chosen)
        if plan.time_range.start != day_bounds(first_day)[0]:
            # Only rows of the first day lie before the range start.
            carry_in = carry_in_at(carry_in, transitions, plan.time_range.start, tags)
        return plan.inside(transitions, "time"), carry_in

    def _range_rows(
        self,
        dataset: str,
        plan: _Plan,
        stored: StoredProducts,
        products: Callable[[date], DayProducts],
        chosen: pa.Table | None,
        read_day: Callable[[DayProducts, date], pa.Table],
    ) -> pa.Table:
        """The rows of `dataset` (`read_day` of a day) on the plan's days: each month copy read
        whole, in its file's order (by tag, then time), the other days from their own files or
        the source. Every caller orders the rows itself (by tag and time, or by time), and
        finds a range inside one month in tag order already: cutting the copy into days and
        sorting the days back into tags took two passes over every row, a third of a 15-minute
        read of 10 tags over 30 days and two thirds of get_metric_data of 1 tag."""
        stored_days = [day for day in plan.days if day in plan.stored]
        from_copies, rest = stored.read_from_copies(dataset, stored_days, chosen)
        day_parts = map_days(plan, products, read_day, sorted(rest + plan.missing))
        return pa.concat_tables([from_copies, *day_parts])

    def _transitions(
        self,
        plan: _Plan,
        stored: StoredProducts,
        products: Callable[[date], DayProducts],
        chosen: pa.Table | None,
    ) -> pa.Table:
        return self._range_rows(
            "transitions", plan, stored, products, chosen, lambda p, day: p.transitions(day, chosen)
        )

    def _computed(
        self,
        plan: _Plan,
        stored: StoredProducts,
        products: Callable[[date], DayProducts],
        tags: pa.Table,
        chosen: pa.Table | None,
        width: timedelta,
        offset: timedelta,
    ) -> tuple[pa.Table, pa.Table]:
        """Samples at any width and offset, exactly, from transitions and the carry-in."""
        transitions, carry_in = self._window_inputs(plan, stored, products, tags, chosen)
        result = samples(
            transitions, carry_in, plan.time_range.start, plan.time_range.end, width, tags, offset
        )
        return result.numeric, result.string

    def _counter_rate(self, query: BucketQuery) -> pa.Table:
        """Per bucket, the counter's increase per second (a drop is a reset), exact from the
        transitions."""
        plan = self._plan(query.time_range, query.allow_source)
        tags, names, chosen = self._resolve_tags(query.tag_names, plan, query.allow_source)
        grid = self._grid(plan, query, len(names))
        stored = self._stored(plan, tags)
        products = self._days_of(plan, tags, stored)
        transitions, carry_in = self._window_inputs(plan, stored, products, tags, chosen)
        return counter_rate(transitions, carry_in, names, grid)


def _at(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def _not_in(names: list[str], catalogue: pa.ChunkedArray) -> list[str]:
    """Those of `names` the catalogue's names lack, in order (a set of a catalogue's names
    per read cost more than the read of a tag's month). A name that is not valid UTF-8 (a
    lone surrogate) is never a catalogue's."""
    text = [name for name in names if _utf8(name)]
    wanted = pa.array(text, type=pa.string())
    found = set(wanted.filter(pc.is_in(wanted, value_set=catalogue)).to_pylist())
    return [name for name in names if name not in found]


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _ids_where(rows: pa.Table, mask: np.ndarray) -> np.ndarray:
    return rows.column("tag_id").to_numpy()[mask]


def _spread(days: list[date], most: int) -> list[date]:
    """At most `most` of `days`, evenly spread, first and last included."""
    if len(days) <= most:
        return days
    picks = np.linspace(0, len(days) - 1, most).round().astype(int)
    return [days[k] for k in np.unique(picks)]
