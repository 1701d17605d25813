"""Writes of span annotations (DESIGN §9) for both transports: the client's store transport
calls them directly, the HTTP service's write routes with the key's tenant and label. Each
write is one call of the state layer (tagflow.annotations.AnnotationStore), which commits it
whole or not at all; this module finds the computed span a write annotates and answers with
the resulting Span.

Finding the computed span. A span id is a hash of (tenant, tag, raw begin): it cannot be turned
back into the span. A span's first annotation therefore names the span as get_spans answered it
(`tag_name` and `raw_begin_at`, which the client takes from the Span it is given), and the span
is read back from the datasets (the UTC day of its raw begin, stored or from the source): it
must be there under that id, which both checks the id and gives the value and computed bounds.
Later writes find the tag and raw begin in the annotation's record. A run still going at the
end of its begin's day has no computed end to check corrections against (ComputedSpan's None).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tagflow.errors import (
    Conflict,
    InvalidAnnotation,
    InvalidArgument,
    MissingPartition,
    TagflowError,
    UnknownSpan,
    UnknownTag,
)
from tagflow.names import validate_tag_name
from tagflow.readapi.annotation_wire import COMPUTED
from tagflow.readapi.errors import AnnotationsNotConfigured
from tagflow.readapi.models import Span, SpanChange, spans_from_table
from tagflow.readapi.query import SpansQuery
from tagflow.time_range import TimeRange

if TYPE_CHECKING:
    from tagflow.annotations import Annotation, AnnotationStore, ComputedSpan
    from tagflow.annotations import SpanChange as StoredChange
    from tagflow.readapi.engine.read_engine import ReadEngine


class _FoundSpans:
    """Computed spans found for writes, by (tenant, span id), each for the engine's cache TTL
    (as long as reads trust a catalogue): the next update of a span then pays no dataset read.
    Bounded: the least recently used go first."""

    MAX_ENTRIES = 10_000

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._entries: OrderedDict[tuple[str, int], tuple[float, Span]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, tenant: str, span_id: int) -> Span | None:
        with self._lock:
            entry = self._entries.get((tenant, span_id))
            if entry is None or entry[0] < time.monotonic():
                return None
            self._entries.move_to_end((tenant, span_id))
            return entry[1]

    def put(self, tenant: str, span: Span) -> None:
        with self._lock:
            self._entries[(tenant, span.id)] = (time.monotonic() + self._ttl_s, span)
            self._entries.move_to_end((tenant, span.id))
            while len(self._entries) > self.MAX_ENTRIES:
                self._entries.popitem(last=False)


_found_spans: weakref.WeakKeyDictionary[ReadEngine, _FoundSpans] = weakref.WeakKeyDictionary()
_found_spans_lock = threading.Lock()


def _found_spans_of(engine: ReadEngine) -> _FoundSpans:
    with _found_spans_lock:
        found = _found_spans.get(engine)
        if found is None:
            found = _found_spans[engine] = _FoundSpans(engine.config.cache_ttl_s)
        return found


def _day_window(moment: datetime) -> TimeRange:
    """[moment, end of its UTC day): the read that finds a span beginning at `moment` and, if
    it ends that day, its computed end."""
    day_end = datetime.combine(
        moment.astimezone(UTC).date() + timedelta(days=1), datetime.min.time()
    )
    return TimeRange(moment, day_end.replace(tzinfo=UTC))


class SpanWrites:
    """The span annotation writes of one tenant, recorded as written by `by` (a key's label)."""

    def __init__(self, engine: ReadEngine, tenant: str, by: str) -> None:
        self._engine = engine
        self.tenant = tenant
        self.by = by
        self._found_spans = _found_spans_of(engine)

    def _store(self) -> AnnotationStore:
        store = self._engine.annotations
        if store is None:
            raise AnnotationsNotConfigured(
                "span annotations are not enabled here: no state database is configured "
                "(set TAGFLOW_STATE_URL, or `embedded` for the demo's server)"
            )
        return store

    # ------------------------------------------------------------------ computed spans

    def _computed(self, span_id: int, tag_name: str, raw_begin_at: datetime) -> Span | None:
        """The computed span `span_id` as get_spans answers it, if it begins at `raw_begin_at`
        on `tag_name`; None otherwise."""
        reader = self._engine.reader(self.tenant)
        try:
            window = _day_window(raw_begin_at)
        except TagflowError:
            raise InvalidArgument("raw_begin_at must be a timezone-aware datetime") from None
        # Hidden spans too: a span someone hid is still the span its later writes annotate.
        query = SpansQuery(tag_name=tag_name, time_range=window, include_hidden=True)
        table = reader.read(query)
        for span in spans_from_table(table):
            if span.id == span_id and span.raw_begin_at == raw_begin_at:
                self._found_spans.put(self.tenant, span)
                return span
        return None

    @staticmethod
    def _as_computed(span: Span) -> ComputedSpan:
        from tagflow.annotations import ComputedSpan

        return ComputedSpan(span.tag_name, span.raw_begin_at, span.raw_end_at)

    def _span_of(self, record: Annotation, computed: Span | None) -> Span:
        """The Span a write answers with: the computed span (if found) with the record's
        corrections and metadata, or a person's span."""
        metadata: dict[str, Any] = {
            "labels": dict(record.labels),
            "note": record.note,
            "revision": record.revision,
            "hidden": record.hidden,
            "origin": record.origin,
            "updated_at": record.updated_at,
            "updated_by": record.updated_by,
        }
        if record.origin == "user":
            assert record.begin_at is not None and record.end_at is not None
            begin, end = record.begin_at, record.end_at
            return Span(
                record.span_id, record.tag_name or "", None, begin, end, begin, end, metadata
            )
        raw_begin = computed.raw_begin_at if computed else record.computed_begin_at
        raw_end = computed.raw_end_at if computed else record.computed_end_at
        assert raw_begin is not None
        if record.begin_at is not None:
            metadata["computed_begin_at"] = raw_begin
        if record.end_at is not None:
            metadata["computed_end_at"] = raw_end
        # A run still going has no end: the span shows it up to where the read saw it.
        seen_end = computed.end_at if computed else raw_begin
        return Span(
            record.span_id,
            computed.tag_name if computed else record.tag_name or "",
            computed.value if computed else None,
            record.begin_at or raw_begin,
            record.end_at or raw_end or seen_end,
            raw_begin,
            raw_end,
            metadata,
        )

    def _found(self, record: Annotation) -> Span | None:
        """The computed span of an annotated computed span, if the datasets still hold it."""
        if record.origin != "computed" or record.tag_name is None:
            return None
        if record.computed_begin_at is None:
            return None
        try:
            return self._computed(record.span_id, record.tag_name, record.computed_begin_at)
        except (UnknownTag, MissingPartition):
            return None  # its tag or day is gone too: detached, answered from its record

    def _span_to_annotate(
        self,
        store: AnnotationStore,
        span_id: int,
        tag_name: str | None,
        raw_begin_at: datetime | None,
    ) -> Span | None:
        """The computed span an update of `span_id` annotates: from its record if it has one
        (None for a person's span, or one the datasets no longer hold), else the span the
        caller named, which must exist under that id (UnknownSpan otherwise)."""
        record = store.get(self.tenant, span_id)
        if record is not None:
            return self._found(record)
        if tag_name is None or raw_begin_at is None:
            raise UnknownSpan(
                f"no annotation of span {span_id} yet: a first annotation names the span as "
                "get_spans answered it (tag_name and raw_begin_at; the client sends them when "
                "given the Span)"
            )
        computed = self._computed(span_id, validate_tag_name(tag_name), raw_begin_at)
        if computed is None:
            raise UnknownSpan(f"no span {span_id} for tenant {self.tenant}")
        return computed

    # ------------------------------------------------------------------ writes

    def update(
        self,
        span_id: int,
        *,
        revision: int,
        tag_name: str | None = None,
        raw_begin_at: datetime | None = None,
        labels: dict[str, str] | None = None,
        note: str | None = None,
        begin_at: datetime | str | None = None,
        end_at: datetime | str | None = None,
        hidden: bool | None = None,
    ) -> Span:
        """Change the given fields of span `span_id` from `revision` (see AnnotationStore.update);
        a bound given as COMPUTED drops its correction. A computed span's first annotation
        needs `tag_name` and `raw_begin_at` (the span as get_spans answered it)."""
        from tagflow.annotations import COMPUTED_BOUND
        from tagflow.annotations.records import checked_span_id

        store = self._store()
        span_id = checked_span_id(self.tenant, span_id)
        bounds = {
            name: COMPUTED_BOUND if value == COMPUTED else value
            for name, value in (("begin_at", begin_at), ("end_at", end_at))
        }
        computed = self._found_spans.get(self.tenant, span_id) or self._span_to_annotate(
            store, span_id, tag_name, raw_begin_at
        )
        try:
            written = store.update(
                self.tenant,
                span_id,
                revision=revision,
                by=self.by,
                computed=self._as_computed(computed) if computed else None,
                labels=labels,
                note=note,
                hidden=hidden,
                **bounds,  # type: ignore[arg-type]  # datetime | ComputedBound | None
            )
        except Conflict as error:
            # The caller starts again from the current record as the Span it reads.
            raise Conflict(str(error), self._span_of(error.current, computed)) from None
        return self._span_of(written, computed)

    def create(
        self,
        tag_name: str,
        begin_at: datetime,
        end_at: datetime,
        *,
        labels: dict[str, str] | None = None,
        note: str | None = None,
    ) -> Span:
        """Add a span of a person's own on `tag_name` (a tag of the tenant)."""
        store = self._store()
        self._require_tag(validate_tag_name(tag_name))
        record = store.create(
            self.tenant, tag_name, begin_at, end_at, by=self.by, labels=labels, note=note
        )
        return self._span_of(record, None)

    def move(
        self,
        span_id: int,
        *,
        revision: int,
        to_span_id: int | None = None,
        to_tag_name: str | None = None,
        to_raw_begin_at: datetime | None = None,
        begin_at: datetime | None = None,
        end_at: datetime | None = None,
    ) -> Span:
        """Move span `span_id`'s annotation (a detached one, typically), starting from
        `revision`, and answer the span that now carries it: the computed span `to_span_id`
        (named as get_spans answered it, with `to_tag_name` and `to_raw_begin_at`; it must
        have no annotation of its own), or without it a new span of the person's own over
        `begin_at` / `end_at` (default: the bounds the annotation covers). The old span keeps
        its record, hidden, with `moved_to` (see AnnotationStore.move)."""
        from tagflow.annotations.records import checked_span_id

        store = self._store()
        span_id = checked_span_id(self.tenant, span_id)
        target: Span | None = None
        if to_span_id is not None:
            to_span_id = checked_span_id(self.tenant, to_span_id)
            if begin_at is not None or end_at is not None:
                raise InvalidAnnotation(
                    "begin_at / end_at are a new span's bounds: a move onto a computed span "
                    "keeps that span's"
                )
            target = self._found_spans.get(self.tenant, to_span_id)
            if target is None:
                if to_tag_name is None or to_raw_begin_at is None:
                    raise InvalidAnnotation(
                        "a move onto a computed span names it as get_spans answered it: "
                        "its id, tag_name and raw_begin_at (the client sends them when given "
                        "the Span)"
                    )
                target = self._computed(to_span_id, validate_tag_name(to_tag_name), to_raw_begin_at)
            if target is None:
                raise UnknownSpan(f"no span {to_span_id} for tenant {self.tenant}")
        elif to_tag_name is not None or to_raw_begin_at is not None:
            raise InvalidAnnotation("to_tag_name and to_raw_begin_at name a to_span_id")
        try:
            moved = store.move(
                self.tenant,
                span_id,
                revision=revision,
                by=self.by,
                to_span_id=to_span_id,
                to_computed=self._as_computed(target) if target else None,
                begin_at=begin_at,
                end_at=end_at,
            )
        except Conflict as error:
            current: Annotation = error.current
            found = target if current.span_id == to_span_id else self._found(current)
            raise Conflict(str(error), self._span_of(current, found)) from None
        return self._span_of(moved, target)

    def _require_tag(self, tag_name: str) -> None:
        catalogue = self._engine.catalogue
        stored = catalogue.stored(self.tenant)
        if stored is not None and tag_name in stored.column("tag_name").to_pylist():
            return
        if catalogue.has_source and tag_name in (
            catalogue.source(self.tenant).column("tag_name").to_pylist()
        ):
            return
        raise UnknownTag(f"unknown tag {tag_name[:80]!r} for this tenant")

    def history(self, span_id: int) -> list[SpanChange]:
        """Every change of span `span_id`, oldest first ([] for a span nobody changed)."""
        from tagflow.annotations.records import checked_span_id

        store = self._store()
        changes: list[StoredChange] = store.history(
            self.tenant, checked_span_id(self.tenant, span_id)
        )
        return [SpanChange(c.revision, c.before, c.after, c.by, c.at) for c in changes]
