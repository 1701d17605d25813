"""The annotation store: reads and writes of span annotations in the state database. Every
write is one transaction that locks the span's record, checks the revision it starts from,
changes the record and appends the change to the history, so a stale revision is refused with
the current record and racing writers on one span serialise (no lost update). Reads for the
span merge come back columnar (one query per read), so merging 1,000 annotations costs
microseconds of Python, not milliseconds."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from tagflow.annotations.records import (
    COMPUTED_BOUND,
    USER_SPAN_ID_MIN,
    Annotation,
    ComputedSpan,
    SpanChange,
    checked_author,
    checked_labels,
    checked_moment,
    checked_note,
    checked_order,
    is_user_span_id,
)
from tagflow.annotations.state_database import state_engine, state_errors
from tagflow.annotations.tables import migrate, span_annotation_history, span_annotations
from tagflow.annotations.tables import user_span_ids as user_span_id_sequence
from tagflow.errors import Conflict, InvalidAnnotation, UnknownSpan
from tagflow.names import validate_tag_name, validate_tenant_name

_TS = pa.timestamp("us", tz="UTC")

# The columns of `for_spans` / `in_range`: one row per annotated span, labels as JSON text (a
# merge parses only the labels of the spans it answers with).
ANNOTATION_COLUMNS = pa.schema(
    [
        ("span_id", pa.int64()),
        ("origin", pa.string()),
        ("tag_name", pa.string()),
        ("labels", pa.string()),
        ("note", pa.string()),
        ("begin_at", _TS),
        ("end_at", _TS),
        ("hidden", pa.bool_()),
        ("revision", pa.int64()),
        ("updated_at", _TS),
        ("updated_by", pa.string()),
        ("computed_begin_at", _TS),
        ("computed_end_at", _TS),
    ]
)


def _micros(column: str) -> str:
    # Timestamps cross as integers: parsing thousands of datetimes in Python is what a merge
    # must not pay for.
    return f"(extract(epoch FROM {column}) * 1000000)::int8"


_COLUMNAR_SELECT = (
    "SELECT span_id, origin, tag_name, labels::text, note, "
    f"{_micros('begin_at')}, {_micros('end_at')}, hidden, revision, {_micros('updated_at')}, "
    f"updated_by, {_micros('computed_begin_at')}, {_micros('computed_end_at')} "
    "FROM span_annotations WHERE tenant = %s"
)


class AnnotationStore:
    """Span annotations of every tenant in one state database (DESIGN §9).

    Writers are named by `by`, the label of the key that writes (never the key). Times must be
    timezone-aware; they come back in UTC. The schema is migrated on first use."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._migrated = False
        self._migrate_lock = threading.Lock()

    @classmethod
    def at(cls, url: str) -> AnnotationStore:
        """The store of the state database at `url` (see state_database.state_url), on the
        process's pooled engine of that URL."""
        return cls(state_engine(url))

    def migrate(self) -> None:
        """Create or migrate the schema now (otherwise done by the first read or write):
        StateSchemaTooNew if a newer tagflow migrated the database."""
        with self._migrate_lock:
            if self._migrated:
                return
            with state_errors("migrating the state database"), self._engine.begin() as conn:
                migrate(conn)
            self._migrated = True

    # -- writes ---------------------------------------------------------------------------

    def update(
        self,
        tenant: str,
        span_id: int,
        *,
        revision: int,
        by: str,
        computed: ComputedSpan | None = None,
        labels: dict[str, str] | None = None,
        note: str | None = None,
        begin_at: datetime | object | None = None,
        end_at: datetime | object | None = None,
        hidden: bool | None = None,
    ) -> Annotation:
        """Change the given fields of span `span_id`'s annotation, starting from `revision`
        (0 for a span never changed), and return the record it now has.

        `computed` is the computed span as the datasets hold it now: required for a computed
        span's first change (without it and without a record the span is UnknownSpan), and the
        bounds a one-sided correction is checked against (otherwise those last stored: a span
        no longer computed keeps its annotation, detached). None leaves a field as it is;
        COMPUTED_BOUND drops a bound's correction. `labels` replaces the whole map.

        Conflict (with the current record) if `revision` is not current; InvalidAnnotation if a
        value breaks a rule; nothing is written then, nor when nothing would change."""
        validate_tenant_name(tenant)
        by = checked_author(by)
        if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
            raise InvalidAnnotation("revision must be a whole number ≥ 0")
        changes: dict[str, Any] = {}
        if labels is not None:
            changes["labels"] = checked_labels(labels)
        if note is not None:
            changes["note"] = checked_note(note)
        for name, bound in (("begin_at", begin_at), ("end_at", end_at)):
            if bound is COMPUTED_BOUND:
                changes[name] = None
            elif bound is not None:
                changes[name] = checked_moment(name, bound).astimezone(UTC)  # type: ignore[arg-type]
        if hidden is not None:
            if not isinstance(hidden, bool):
                raise InvalidAnnotation("hidden must be true or false")
            changes["hidden"] = hidden
        if computed is not None:
            computed = _checked_computed(computed)
        self.migrate()
        with state_errors("writing a span annotation"), self._engine.begin() as conn:
            current = self._locked(conn, tenant, span_id)
            if current is None:
                if computed is None or is_user_span_id(span_id):
                    raise UnknownSpan(f"no span {span_id} for tenant {tenant}")
                current = _unannotated(tenant, span_id, computed)
            elif computed is not None and current.origin == "computed":
                current = replace(
                    current, computed_begin_at=computed.begin_at, computed_end_at=computed.end_at
                )
            if revision != current.revision:
                raise Conflict(
                    f"span {span_id} is at revision {current.revision}, not {revision}; "
                    "start again from the current record",
                    current,
                )
            wanted = _changed(current, changes)
            if wanted.content() == current.content():
                return current
            if current.revision == 0 and not self._insert(conn, wanted, by):
                # Another writer's first change committed while this one waited: it is stale.
                raced = self._locked(conn, tenant, span_id)
                raise Conflict(
                    f"span {span_id} was changed meanwhile; start again from the current record",
                    raced,
                )
            if current.revision > 0:
                self._rewrite(conn, wanted, by)
            stored = self._locked(conn, tenant, span_id)
            assert stored is not None
            self._append_history(conn, stored, current.content())
            return stored

    def create(
        self,
        tenant: str,
        tag_name: str,
        begin_at: datetime,
        end_at: datetime,
        *,
        by: str,
        labels: dict[str, str] | None = None,
        note: str | None = None,
    ) -> Annotation:
        """Add a span of a person's own on `tag_name` (whether the tag exists is the caller's
        check) from `begin_at` to `end_at`; its id comes from the state database, in the range
        no computed id takes. Returns its record at revision 1."""
        validate_tenant_name(tenant)
        validate_tag_name(tag_name)
        by = checked_author(by)
        begin = checked_moment("begin_at", begin_at).astimezone(UTC)
        end = checked_moment("end_at", end_at).astimezone(UTC)
        checked_order(begin, end)
        fields = {
            "labels": checked_labels(labels if labels is not None else {}),
            "note": checked_note(note if note is not None else ""),
        }
        self.migrate()
        with state_errors("adding a span"), self._engine.begin() as conn:
            number = conn.execute(user_span_id_sequence.next_value()).scalar_one()
            record = Annotation(
                tenant=tenant,
                span_id=USER_SPAN_ID_MIN + number,
                origin="user",
                tag_name=tag_name,
                begin_at=begin,
                end_at=end,
                revision=1,
                **fields,
            )
            self._insert(conn, record, by)
            stored = self._locked(conn, tenant, record.span_id)
            assert stored is not None
            self._append_history(conn, stored, None)
            return stored

    def _locked(self, conn: sa.Connection, tenant: str, span_id: int) -> Annotation | None:
        row = conn.execute(
            sa.select(span_annotations)
            .where(span_annotations.c.tenant == tenant, span_annotations.c.span_id == span_id)
            .with_for_update()
        ).one_or_none()
        return None if row is None else _annotation(row)

    def _insert(self, conn: sa.Connection, record: Annotation, by: str) -> bool:
        values = _row_values(record, by) | {"revision": 1}
        inserted = conn.execute(
            insert(span_annotations)
            .values(values)
            .on_conflict_do_nothing(index_elements=["tenant", "span_id"])
            .returning(span_annotations.c.span_id)
        ).one_or_none()
        return inserted is not None

    def _rewrite(self, conn: sa.Connection, record: Annotation, by: str) -> None:
        values = _row_values(record, by) | {"revision": span_annotations.c.revision + 1}
        conn.execute(
            span_annotations.update()
            .where(
                span_annotations.c.tenant == record.tenant,
                span_annotations.c.span_id == record.span_id,
            )
            .values(values)
        )

    def _append_history(
        self, conn: sa.Connection, stored: Annotation, before: dict[str, Any] | None
    ) -> None:
        conn.execute(
            span_annotation_history.insert().values(
                tenant=stored.tenant,
                span_id=stored.span_id,
                revision=stored.revision,
                before=before,
                after=stored.content(),
                changed_by=stored.updated_by,
                changed_at=stored.updated_at,
            )
        )

    # -- reads ----------------------------------------------------------------------------

    def get(self, tenant: str, span_id: int) -> Annotation | None:
        """Span `span_id`'s current annotation, or None if nobody changed it (or it is not
        the tenant's)."""
        self.migrate()
        with state_errors("reading a span annotation"), self._engine.connect() as conn:
            row = conn.execute(
                sa.select(span_annotations).where(
                    span_annotations.c.tenant == tenant, span_annotations.c.span_id == span_id
                )
            ).one_or_none()
        return None if row is None else _annotation(row)

    def history(self, tenant: str, span_id: int) -> list[SpanChange]:
        """Every change of span `span_id`, oldest first ([] for a span never changed or not
        the tenant's: whether the span exists is the caller's answer)."""
        self.migrate()
        h = span_annotation_history.c
        with state_errors("reading a span's history"), self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(h.revision, h.before, h.after, h.changed_by, h.changed_at)
                .where(h.tenant == tenant, h.span_id == span_id)
                .order_by(h.revision)
            ).all()
        return [SpanChange(r.revision, r.before, r.after, r.changed_by, r.changed_at) for r in rows]

    def for_spans(self, tenant: str, span_ids: Sequence[int] | np.ndarray) -> pa.Table:
        """The annotations of those of `span_ids` that have one, as ANNOTATION_COLUMNS (one
        query, whatever the number of ids)."""
        ids = np.asarray(span_ids, dtype=np.int64)
        if ids.size == 0:
            return ANNOTATION_COLUMNS.empty_table()
        # One array literal: adapting thousands of ints one by one costs more than the query.
        literal = "{" + ",".join(map(str, np.unique(ids).tolist())) + "}"
        return self._columnar(
            f"{_COLUMNAR_SELECT} AND span_id = ANY(%s::int8[])", (literal,), tenant=tenant
        )

    def in_range(self, tenant: str, begin: datetime, end: datetime) -> pa.Table:
        """The annotations (computed and a person's spans, hidden ones too) whose bounds, the
        corrected ones where set and otherwise those last stored, intersect [begin, end): a
        read adds them to the spans it found by their computed bounds."""
        begin = checked_moment("begin", begin)
        end = checked_moment("end", end)
        return self._columnar(
            f"{_COLUMNAR_SELECT} AND coalesce(begin_at, computed_begin_at) < %s"
            " AND (coalesce(end_at, computed_end_at) IS NULL"
            " OR coalesce(end_at, computed_end_at) > %s)",
            (end, begin),
            tenant=tenant,
        )

    def records(self, tenant: str) -> pa.Table:
        """Every annotation of `tenant`, as ANNOTATION_COLUMNS ordered by span id (for export)."""
        return self._columnar(f"{_COLUMNAR_SELECT} ORDER BY span_id", (), tenant=tenant)

    def _columnar(self, query: str, params: tuple[Any, ...], *, tenant: str) -> pa.Table:
        self.migrate()
        with state_errors("reading span annotations"), self._engine.connect() as conn:
            driver = conn.connection.driver_connection
            rows = driver.execute(query, (tenant, *params)).fetchall()
        return _columns(rows)

    def high_water_mark(self, tenant: str | None = None) -> int:
        """A number that grows with every change (of `tenant`, or of any tenant): a sensor
        exports the annotations again when it moved."""
        self.migrate()
        h = span_annotation_history.c
        query = sa.select(sa.func.coalesce(sa.func.max(h.seq), 0))
        if tenant is not None:
            query = query.where(h.tenant == tenant)
        with state_errors("reading the high-water mark"), self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())


def _checked_computed(computed: ComputedSpan) -> ComputedSpan:
    begin = checked_moment("the computed begin_at", computed.begin_at).astimezone(UTC)
    end = computed.end_at
    if end is not None:
        end = checked_moment("the computed end_at", end).astimezone(UTC)
    return ComputedSpan(computed.tag_name, begin, end)


def _unannotated(tenant: str, span_id: int, computed: ComputedSpan) -> Annotation:
    return Annotation(
        tenant=tenant,
        span_id=span_id,
        origin="computed",
        tag_name=computed.tag_name,
        computed_begin_at=computed.begin_at,
        computed_end_at=computed.end_at,
    )


def _changed(current: Annotation, changes: dict[str, Any]) -> Annotation:
    """`current` with `changes`, if its bounds stay ordered (a correction is checked against
    the computed bound it leaves in place)."""
    if current.origin == "user" and any(
        name in changes and changes[name] is None for name in ("begin_at", "end_at")
    ):
        raise InvalidAnnotation("a span a person added has no computed bound to return to")
    wanted = replace(current, **changes)
    begin = wanted.begin_at if wanted.begin_at is not None else wanted.computed_begin_at
    end = wanted.end_at if wanted.end_at is not None else wanted.computed_end_at
    checked_order(begin, end)
    return wanted


def _row_values(record: Annotation, by: str) -> dict[str, Any]:
    return {
        "tenant": record.tenant,
        "span_id": record.span_id,
        "origin": record.origin,
        "tag_name": record.tag_name,
        "labels": record.labels,
        "note": record.note,
        "begin_at": record.begin_at,
        "end_at": record.end_at,
        "hidden": record.hidden,
        "updated_at": sa.func.clock_timestamp(),
        "updated_by": by,
        "computed_begin_at": record.computed_begin_at,
        "computed_end_at": record.computed_end_at,
    }


def _annotation(row: sa.Row) -> Annotation:
    return Annotation(
        tenant=row.tenant,
        span_id=row.span_id,
        origin=row.origin,
        tag_name=row.tag_name,
        labels=dict(row.labels),
        note=row.note,
        begin_at=row.begin_at,
        end_at=row.end_at,
        hidden=row.hidden,
        revision=row.revision,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
        computed_begin_at=row.computed_begin_at,
        computed_end_at=row.computed_end_at,
    )


def _columns(rows: Iterable[tuple[Any, ...]]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) or [() for _ in ANNOTATION_COLUMNS]
    arrays = []
    for values, column in zip(columns, ANNOTATION_COLUMNS, strict=True):
        if column.type == _TS:
            arrays.append(pa.array(values, type=pa.int64()).cast(_TS))
        else:
            arrays.append(pa.array(values, type=column.type))
    return pa.Table.from_arrays(arrays, schema=ANNOTATION_COLUMNS)
