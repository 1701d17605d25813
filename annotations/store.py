"""The annotation store: reads and writes of span annotations in the state database.

A write is one statement (autocommit, one round trip): an UPDATE of the record that names the
revision it starts from (or an INSERT of a first one), with the history row appended by the
same statement, so it commits whole or not at all, a stale revision changes nothing (and is
refused with the current record), and racing writers on one span serialise on its row (no lost
update). What the write is checked against is the record at that revision: records are
immutable per revision, so this process keeps the last one it saw of each span and reads one
only when the caller starts from another revision. Reads for the span merge come back columnar
(one query per read), and a tenant's annotations are kept between reads, refreshed by one
indexed statement per read (annotations.layer_cache), so a read stays exact and costs one round
trip whatever the number of annotations."""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import sqlalchemy as sa
from psycopg.types.json import Jsonb
from sqlalchemy.dialects.postgresql import insert

from tagflow.annotations.layer_cache import CHANGED_SINCE, SNAPSHOT_SELECT, Layer, layer_cache
from tagflow.annotations.records import (
    USER_SPAN_ID_MIN,
    Annotation,
    ComputedBound,
    ComputedSpan,
    SpanChange,
    checked_author,
    checked_labels,
    checked_moment,
    checked_note,
    checked_order,
    checked_span_id,
    is_user_span_id,
)
from tagflow.annotations.state_database import (
    PerEngine,
    state_engine,
    state_errors,
    transactional,
)
from tagflow.annotations.tables import (
    EFFECTIVE_RANGE,
    migrate,
    span_annotation_history,
    span_annotations,
)
from tagflow.annotations.tables import user_span_ids as user_span_id_sequence
from tagflow.errors import Conflict, InvalidAnnotation, InvalidTimeRange, UnknownSpan
from tagflow.names import validate_tag_name, validate_tenant_name

_TS = pa.timestamp("us", tz="UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The columns of `for_spans`, `for_read` and `records`: one row per annotated span, labels as
# JSON text (a merge parses only the labels of the spans it answers with).
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
        ("moved_to", pa.int64()),
    ]
)


_COLUMNAR_SELECT = "SELECT " + ", ".join(ANNOTATION_COLUMNS.names) + " FROM span_annotations"


# The columns of `history_table`: one row per change, before / after as JSON text.
HISTORY_COLUMNS = pa.schema(
    [
        ("seq", pa.int64()),
        ("span_id", pa.int64()),
        ("revision", pa.int64()),
        ("before", pa.string()),
        ("after", pa.string()),
        ("changed_by", pa.string()),
        ("changed_at", _TS),
    ]
)
_JSON_COLUMNS = {"labels", "before", "after"}


def _aggregated(name: str, kind: pa.DataType) -> str:
    # Timestamps as µs since the epoch: exact while |µs| < 2^53 (the years 1686 to 2254, wider
    # than checked_moment allows), and no datetime object made per value.
    if kind == _TS:
        return f"array_agg(round(date_part('epoch', {name}) * 1000000)::int8)"
    return f"array_agg({name}::text)" if name in _JSON_COLUMNS else f"array_agg({name})"


_OVERLAPS = f"{EFFECTIVE_RANGE} && tstzrange(%s, %s)"
# One row of one array per column, in binary: the driver decodes them in C and Arrow takes
# them whole, so a merge pays no Python object per row.
_AGGREGATES = {
    schema: ", ".join(_aggregated(f.name, f.type) for f in schema)
    for schema in (ANNOTATION_COLUMNS, HISTORY_COLUMNS)
}


# Engines whose database this process has migrated (or found current): once per engine, not
# per store.
_migrated: weakref.WeakSet[sa.Engine] = weakref.WeakSet()
_migrate_lock = threading.Lock()


class AnnotationStore:
    """Span annotations of every tenant in one state database (DESIGN §9).

    Writers are named by `by`, the label of the key that writes (never the key). Times must be
    timezone-aware; they come back in UTC. The schema is migrated on first use."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    @classmethod
    def at(cls, url: str) -> AnnotationStore:
        """The store of the state database at `url` (see state_database.state_url), on the
        process's pooled engine of that URL."""
        return cls(state_engine(url))

    def migrate(self) -> None:
        """Create or migrate the schema now (otherwise done by the first read or write):
        StateSchemaTooNew if a newer tagflow migrated the database."""
        if self._engine in _migrated:
            return
        with _migrate_lock:
            if self._engine in _migrated:
                return
            with (
                state_errors("migrating the state database"),
                transactional(self._engine).begin() as conn,
            ):
                migrate(conn)
            _migrated.add(self._engine)

    @contextmanager
    def _session(self, action: str) -> Iterator[psycopg.Connection]:
        """A pooled session of the state database for the block (each statement commits by
        itself); its failures while `action` runs are StateUnavailable. A session the failure
        broke is closed, never pooled again."""
        self.migrate()
        with state_errors(action):
            pooled = self._engine.raw_connection()
            driver: psycopg.Connection = pooled.driver_connection  # type: ignore[assignment]
            try:
                yield driver
            except BaseException:
                if driver.closed or driver.broken:
                    pooled.invalidate()
                raise
            finally:
                pooled.close()

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
        begin_at: datetime | ComputedBound | None = None,
        end_at: datetime | ComputedBound | None = None,
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
        span_id = checked_span_id(tenant, span_id)
        by = checked_author(by)
        _check_revision(revision)
        changes: dict[str, Any] = {}
        if labels is not None:
            changes["labels"] = checked_labels(labels)
        if note is not None:
            changes["note"] = checked_note(note)
        for name, bound in (("begin_at", begin_at), ("end_at", end_at)):
            if isinstance(bound, ComputedBound):
                changes[name] = None
            elif bound is not None:
                changes[name] = checked_moment(name, bound)
        if hidden is not None:
            if not isinstance(hidden, bool):
                raise InvalidAnnotation("hidden must be true or false")
            changes["hidden"] = hidden
        if computed is not None:
            computed = _checked_computed(computed)
        known = _known.of(self._engine)
        with self._session("writing a span annotation") as conn:
            # The record the change starts from: the one this process last saw at `revision`,
            # else read. A first change presumes there is none: its INSERT finds out.
            presumed_absent = revision == 0 and computed is not None
            stored = known.get(tenant, span_id, revision)
            if stored is None and not (presumed_absent and not is_user_span_id(span_id)):
                stored = _select(conn, tenant, span_id)
            current = _current(tenant, span_id, stored, computed)
            if revision != current.revision:
                raise _stale(span_id, revision, current)
            try:
                wanted = _changed(current, changes)
            except InvalidAnnotation:
                # A stale revision is a Conflict before any rule: check the record read is current.
                found = _select(conn, tenant, span_id)
                if found is not None and found.revision != revision:
                    stale = _stale(span_id, revision, _current(tenant, span_id, found, computed))
                    raise stale from None
                raise
            if wanted.content() == current.content():
                found = stored or _select(conn, tenant, span_id)
                if found is not None and found.revision != revision:
                    raise _stale(span_id, revision, _current(tenant, span_id, found, computed))
                return current
            written = _write(conn, wanted, by, before=current.content())
            if written is None:
                # Another writer's change committed first: this one started from a stale record.
                found = _select(conn, tenant, span_id)
                raise _stale(span_id, revision, _current(tenant, span_id, found, computed))
        known.put(written)
        return written

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
        begin = checked_moment("begin_at", begin_at)
        end = checked_moment("end_at", end_at)
        checked_order(begin, end)
        record = Annotation(
            tenant=tenant,
            span_id=USER_SPAN_ID_MIN,  # the statement takes the next one of the range
            origin="user",
            tag_name=tag_name,
            labels=checked_labels(labels if labels is not None else {}),
            note=checked_note(note if note is not None else ""),
            begin_at=begin,
            end_at=end,
        )
        with self._session("adding a span") as conn:
            written = _write(conn, record, by, before=None)
        assert written is not None  # a new id is never taken
        _known.of(self._engine).put(written)
        return written

    def move(
        self,
        tenant: str,
        span_id: int,
        *,
        revision: int,
        by: str,
        to_span_id: int | None = None,
        to_computed: ComputedSpan | None = None,
        begin_at: datetime | None = None,
        end_at: datetime | None = None,
    ) -> Annotation:
        """Move span `span_id`'s annotation (typically a detached one), starting from
        `revision`, and return the record of the span that now carries it.

        With `to_span_id` and `to_computed` (that span as the datasets hold it), onto a computed
        span nobody annotated yet (Conflict with its record otherwise); without, onto a new
        span of a person's own over `begin_at` / `end_at` (default: the bounds the annotation
        covers). Labels and note carry over. The old record stays, hidden, and says where its
        annotation went (`moved_to`): both changes are in the history, in one transaction."""
        validate_tenant_name(tenant)
        span_id = checked_span_id(tenant, span_id)
        by = checked_author(by)
        _check_revision(revision)
        if to_span_id is not None:
            to_span_id = checked_span_id(tenant, to_span_id)
        if (to_span_id is None) != (to_computed is None):
            raise InvalidAnnotation("a move onto a computed span names its id and its bounds")
        if to_span_id is not None and (to_span_id == span_id or is_user_span_id(to_span_id)):
            raise InvalidAnnotation("an annotation moves onto another computed span or a new one")
        bounds = [
            checked_moment(n, b) if b is not None else None
            for n, b in (("begin_at", begin_at), ("end_at", end_at))
        ]
        target_span = None if to_computed is None else _checked_computed(to_computed)
        self.migrate()
        with (
            state_errors("moving a span annotation"),
            transactional(self._engine).begin() as conn,
        ):
            # Both rows locked in id order, so crossing moves cannot deadlock.
            ids = sorted({span_id} if to_span_id is None else {span_id, to_span_id})
            locked = {i: self._locked(conn, tenant, i) for i in ids}
            source = locked[span_id]
            if source is None:
                raise UnknownSpan(f"no annotation of span {span_id} for tenant {tenant}")
            if revision != source.revision:
                raise Conflict(
                    f"span {span_id} is at revision {source.revision}, not {revision}; "
                    "start again from the current record",
                    source,
                )
            if source.moved_to is not None:
                raise InvalidAnnotation(
                    f"span {span_id}'s annotation already moved to span {source.moved_to}"
                )
            carried: dict[str, Any] = {"labels": source.labels, "note": source.note}
            if target_span is None:
                begin = bounds[0] or source.begin_at or source.computed_begin_at
                end = bounds[1] or source.end_at or source.computed_end_at
                if begin is None or end is None:
                    raise InvalidAnnotation("the span had not ended: give the new span's end_at")
                checked_order(begin, end)
                number = conn.execute(user_span_id_sequence.next_value()).scalar_one()
                target = Annotation(
                    tenant=tenant,
                    span_id=USER_SPAN_ID_MIN + number,
                    origin="user",
                    tag_name=source.tag_name,
                    begin_at=begin,
                    end_at=end,
                    revision=1,
                    **carried,
                )
                before = None
            else:
                assert to_span_id is not None
                current = locked[to_span_id]
                if current is not None:
                    raise Conflict(
                        f"span {to_span_id} has an annotation of its own (revision "
                        f"{current.revision}); update it instead",
                        current,
                    )
                blank = _unannotated(tenant, to_span_id, target_span)
                target, before = replace(blank, **carried), blank.content()
            if not self._insert(conn, target, by):
                raced = self._locked(conn, tenant, target.span_id)
                raise Conflict(f"span {target.span_id} was annotated meanwhile", raced)
            stored = self._locked(conn, tenant, target.span_id)
            assert stored is not None
            self._append_history(conn, stored, before)
            self._rewrite(conn, replace(source, moved_to=stored.span_id, hidden=True), by)
            left = self._locked(conn, tenant, span_id)
            assert left is not None
            self._append_history(conn, left, source.content())
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
        span_id = checked_span_id(tenant, span_id)
        with self._session("reading a span annotation") as conn:
            record = _select(conn, tenant, span_id)
        if record is not None:
            _known.of(self._engine).put(record)
        return record

    def history(self, tenant: str, span_id: int) -> list[SpanChange]:
        """Every change of span `span_id`, oldest first ([] for a span never changed or not
        the tenant's: whether the span exists is the caller's answer)."""
        span_id = checked_span_id(tenant, span_id)
        with self._session("reading a span's history") as conn:
            rows = conn.execute(
                "SELECT revision, before, after, changed_by, changed_at"
                " FROM span_annotation_history WHERE tenant = %s AND span_id = %s"
                " ORDER BY revision",
                (tenant, span_id),
            ).fetchall()
        return [SpanChange(*row) for row in rows]

    def for_spans(self, tenant: str, span_ids: Sequence[int] | np.ndarray) -> pa.Table:
        """The annotations of those of `span_ids` that have one, as ANNOTATION_COLUMNS (one
        query, whatever the number of ids)."""
        ids = np.unique(np.asarray(span_ids, dtype=np.int64))
        if ids.size == 0:
            return ANNOTATION_COLUMNS.empty_table()
        # One array literal, joined (not ANY, which compares each row with every id).
        literal = "{" + ",".join(ids.astype(str)) + "}"
        _, table = self._columnar(
            f"{_COLUMNAR_SELECT} JOIN unnest(%s::int8[]) AS wanted(id) ON span_id = wanted.id"
            " WHERE tenant = %s",
            (literal, tenant),
        )
        return table

    def for_read(
        self, tenant: str, begin: datetime, end: datetime, *, computed_since: datetime | None = None
    ) -> pa.Table:
        """What a read of [begin, end) merges: the annotations whose bounds (corrected where
        set, otherwise those last stored) intersect the range (a person's spans, and computed
        ones a correction moved into it), and those of every computed span that began in
        [computed_since, end), so a read that found computed spans beginning from
        `computed_since` gets all of theirs. A computed span's begin never changes under its id
        (the id hashes it); its end may, so the merge takes the end from the spans it read and
        the annotations by `span_id`. Hidden ones included. As of one statement that began
        after the call did: from the tenant's layer kept in this process, brought up to date
        by that statement (annotations.layer_cache), or by range where it is too large."""
        begin = checked_moment("begin", begin)
        end = checked_moment("end", end)
        if begin >= end:
            raise InvalidTimeRange("a read's begin must be before its end")
        since = end if computed_since is None else checked_moment("computed_since", computed_since)
        layer = self._layer(tenant)
        if layer is not None:
            return layer.for_read(_us(begin), _us(end), _us(since))
        _, table = self._columnar(
            # Two branches, each on its own index (an OR would scan the tenant's whole history).
            # The first compares `tenant || ''`, which no index holds, so that the planner walks
            # the range index instead of every annotation of the tenant.
            f"{_COLUMNAR_SELECT} WHERE tenant || '' = %s AND {_OVERLAPS}"
            f" UNION ALL {_COLUMNAR_SELECT} WHERE tenant = %s"
            f" AND computed_begin_at >= %s AND computed_begin_at < %s AND NOT {_OVERLAPS}",
            (tenant, begin, end, tenant, since, end, begin, end),
        )
        return table

    def _layer(self, tenant: str) -> Layer | None:
        """`tenant`'s annotations as of a statement run now: the kept layer with the records
        changed since its snapshot read in; the whole layer read if none is kept. None where
        the layer is too large to keep (the caller reads by range)."""
        validate_tenant_name(tenant)
        cache = layer_cache(self._engine)
        if cache.too_large(tenant):
            return None
        base = cache.get(tenant)
        if base is None:
            snapshot, table = self._columnar(
                f"{_COLUMNAR_SELECT} WHERE tenant = %s", (tenant,), with_snapshot=True
            )
            layer = Layer.of(snapshot, table)
        else:
            snapshot, changed = self._columnar(
                f"{_COLUMNAR_SELECT} WHERE {CHANGED_SINCE}",
                (tenant, tenant, base.snapshot, base.snapshot),
                with_snapshot=True,
            )
            layer = base.patched(snapshot, changed)
        cache.offer(tenant, base, layer)
        return layer

    def records(self, tenant: str) -> pa.Table:
        """Every annotation of `tenant`, as ANNOTATION_COLUMNS ordered by span id (for export)."""
        layer = self._layer(tenant)
        if layer is not None:
            return layer.table.sort_by("span_id")
        _, table = self._columnar(f"{_COLUMNAR_SELECT} WHERE tenant = %s", (tenant,))
        return table.sort_by("span_id")

    def history_table(self, tenant: str) -> pa.Table:
        """Every change of `tenant`'s annotations, as HISTORY_COLUMNS in the order they were
        made (for export)."""
        query = (
            "SELECT seq, span_id, revision, before, after, changed_by, changed_at"
            " FROM span_annotation_history WHERE tenant = %s"
        )
        _, table = self._columnar(query, (tenant,), HISTORY_COLUMNS)
        return table.sort_by("seq")

    def _columnar(
        self,
        query: str,
        params: tuple[Any, ...],
        schema: pa.Schema = ANNOTATION_COLUMNS,
        *,
        with_snapshot: bool = False,
    ) -> tuple[str, pa.Table]:
        """The rows of `query` as `schema`, and with `with_snapshot` the snapshot the statement
        read in (else "")."""
        snapshot = f"{SNAPSHOT_SELECT}, " if with_snapshot else ""
        aggregated = f"SELECT {snapshot}{_AGGREGATES[schema]} FROM ({query}) AS a"
        with self._session("reading span annotations") as conn:
            row = conn.cursor(binary=True).execute(aggregated, params).fetchone()
        assert row is not None  # aggregates answer one row
        taken = str(row[0]) if with_snapshot else ""
        values = row[1:] if with_snapshot else row
        if values[0] is None:
            return taken, schema.empty_table()
        arrays = [
            pa.array(column, pa.int64()).cast(_TS) if f.type == _TS else pa.array(column, f.type)
            for column, f in zip(values, schema, strict=True)
        ]
        return taken, pa.Table.from_arrays(arrays, schema=schema)

    def high_water_mark(self, tenant: str | None = None) -> int:
        """The number of changes committed (of `tenant`, or of every tenant): it grows with
        every change, whatever order concurrent writers commit in, and a sensor exports the
        annotations again when it moved. (Not the largest `seq`: a change given a lower seq can
        commit after a higher one was read, and would wait for the next change to be
        exported.)"""
        query = "SELECT count(*) FROM span_annotation_history"
        params: tuple[str, ...] = ()
        if tenant is not None:
            query, params = query + " WHERE tenant = %s", (tenant,)
        with self._session("reading the high-water mark") as conn:
            row = conn.execute(query, params).fetchone()
        assert row is not None
        return int(row[0])


def _us(moment: datetime) -> int:
    """`moment` (aware) as µs since the epoch, as the layer holds times."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


# Every column of a record, in the order the statements below answer them.
_RECORD = tuple(column.name for column in span_annotations.columns)
_RECORD_LIST = ", ".join(_RECORD)
_SELECT = f"SELECT {_RECORD_LIST} FROM span_annotations WHERE tenant = %s AND span_id = %s"

# A write and its history row in one statement: `written` is the record as stored (no row if
# the write matched nothing), the history row is appended from it.
_LOGGED = (
    ", logged AS (INSERT INTO span_annotation_history"
    " (tenant, span_id, revision, before, after, changed_by, changed_at)"
    " SELECT tenant, span_id, revision, %(before)s::jsonb, %(after)s::jsonb, updated_by,"
    f" updated_at FROM written) SELECT {_RECORD_LIST} FROM written"
)
_UPDATE = (
    "WITH written AS (UPDATE span_annotations SET labels = %(labels)s::jsonb, note = %(note)s,"
    " begin_at = %(begin_at)s, end_at = %(end_at)s, hidden = %(hidden)s,"
    " computed_begin_at = %(computed_begin_at)s, computed_end_at = %(computed_end_at)s,"
    " moved_to = %(moved_to)s, revision = revision + 1, updated_at = clock_timestamp(),"
    " updated_by = %(by)s"
    " WHERE tenant = %(tenant)s AND span_id = %(span_id)s AND revision = %(revision)s"
    f" RETURNING {_RECORD_LIST})" + _LOGGED
)
_INSERT = (
    f"WITH written AS (INSERT INTO span_annotations ({_RECORD_LIST}) VALUES (%(tenant)s,"
    " {span_id}, %(origin)s, %(tag_name)s, %(labels)s::jsonb, %(note)s, %(begin_at)s,"
    " %(end_at)s, %(hidden)s, 1, clock_timestamp(), %(by)s, %(computed_begin_at)s,"
    " %(computed_end_at)s, %(moved_to)s)"
    f" ON CONFLICT (tenant, span_id) DO NOTHING RETURNING {_RECORD_LIST})" + _LOGGED
)
_INSERT_COMPUTED = _INSERT.replace("{span_id}", "%(span_id)s")
# A person's span takes the next id of its range.
_INSERT_USER = _INSERT.replace(
    "{span_id}", f"{USER_SPAN_ID_MIN} + nextval('{user_span_id_sequence.name}')"
)


def _record(row: tuple[Any, ...]) -> Annotation:
    return Annotation(**dict(zip(_RECORD, row, strict=True)))


def _select(conn: psycopg.Connection, tenant: str, span_id: int) -> Annotation | None:
    row = conn.execute(_SELECT, (tenant, span_id)).fetchone()
    return None if row is None else _record(row)


def _write(
    conn: psycopg.Connection, record: Annotation, by: str, *, before: dict[str, Any] | None
) -> Annotation | None:
    """Store `record` and its history row (the change from `before`) in one statement: a first
    record (revision 0; a person's span takes a new id) or the change of the one at its
    revision. None if nothing matched: the record exists already, or is at another revision."""
    params = {
        name: getattr(record, name)
        for name in _RECORD
        if name not in ("labels", "updated_at", "updated_by")
    }
    params.update(
        labels=Jsonb(record.labels),
        by=by,
        before=None if before is None else Jsonb(before),
        after=Jsonb(record.content()),
    )
    if record.revision > 0:
        statement = _UPDATE
    else:
        statement = _INSERT_USER if record.origin == "user" else _INSERT_COMPUTED
    row = conn.execute(statement, params).fetchone()
    return None if row is None else _record(row)


def _current(
    tenant: str, span_id: int, stored: Annotation | None, computed: ComputedSpan | None
) -> Annotation:
    """The record an update starts from: `stored` with the computed bounds as the datasets hold
    them now, or a blank one for a computed span nobody annotated (UnknownSpan for any other)."""
    if stored is None:
        if computed is None or is_user_span_id(span_id):
            raise UnknownSpan(f"no span {span_id} for tenant {tenant}")
        return _unannotated(tenant, span_id, computed)
    if computed is not None and stored.origin == "computed":
        return replace(stored, computed_begin_at=computed.begin_at, computed_end_at=computed.end_at)
    return stored


def _stale(span_id: int, revision: int, current: Annotation) -> Conflict:
    return Conflict(
        f"span {span_id} is at revision {current.revision}, not {revision}; "
        "start again from the current record",
        current,
    )


class _KnownRecords:
    """The last record this process wrote or read of each span (a record never changes at a
    revision, so one is exact whenever a write starts from its revision). Bounded: the least
    recently used go first."""

    MAX_ENTRIES = 20_000

    def __init__(self) -> None:
        self._records: OrderedDict[tuple[str, int], Annotation] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, tenant: str, span_id: int, revision: int) -> Annotation | None:
        with self._lock:
            record = self._records.get((tenant, span_id))
        return record if record is not None and record.revision == revision else None

    def put(self, record: Annotation) -> None:
        with self._lock:
            self._records[(record.tenant, record.span_id)] = record
            self._records.move_to_end((record.tenant, record.span_id))
            while len(self._records) > self.MAX_ENTRIES:
                self._records.popitem(last=False)


_known = PerEngine(_KnownRecords)


def _check_revision(revision: object) -> None:
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
        raise InvalidAnnotation("revision must be a whole number ≥ 0")


def _checked_computed(computed: ComputedSpan) -> ComputedSpan:
    begin = checked_moment("the computed begin_at", computed.begin_at)
    end = computed.end_at
    if end is not None:
        end = checked_moment("the computed end_at", end)
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
        "moved_to": record.moved_to,
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
        moved_to=row.moved_to,
    )
