"""The annotations a process keeps between reads (annotations.layer_cache) answer exactly what
the state database holds when the read begins: writes through another engine (another server),
a writer that commits after a later one, and every change a sequence of writes makes, checked
against the records filtered by hand; and a pooled session the server ended since its last use
costs a reconnect, not an error."""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pyarrow as pa
from psycopg.types.json import Jsonb

from tagflow.annotations import COMPUTED_BOUND, AnnotationStore, ComputedSpan
from tagflow.annotations.state_database import create_state_engine
from tagflow.source.connection import libpq_url
from tests.annotations.conftest import T0

RANGE = (T0, T0 + timedelta(hours=6))


def _expected(url: str, tenant: str, begin: datetime, end: datetime, since: datetime) -> set:
    """for_read's answer worked out by hand from every record: its bounds (corrected, else
    computed; an open end reaches forever) meet [begin, end), or its computed span began in
    [since, end)."""
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute(
            "SELECT span_id, revision, coalesce(begin_at, computed_begin_at),"
            " coalesce(end_at, computed_end_at), computed_begin_at"
            " FROM span_annotations WHERE tenant = %s",
            (tenant,),
        ).fetchall()
    found = set()
    for span_id, revision, lo, hi, computed_begin in rows:
        meets = lo < end and (hi is None or (hi > lo and hi > begin))
        began = computed_begin is not None and since <= computed_begin < end
        if meets or began:
            found.add((span_id, revision))
    return found


def _answered(table: pa.Table) -> set:
    return set(
        zip(table.column("span_id").to_pylist(), table.column("revision").to_pylist(), strict=True)
    )


def _read(store: AnnotationStore, tenant: str) -> set:
    return _answered(store.for_read(tenant, *RANGE))


def test_a_write_through_another_engine_is_in_the_next_read(state_url, tenant):
    reader = AnnotationStore(create_state_engine(state_url))
    writer = AnnotationStore(create_state_engine(state_url))
    span = ComputedSpan("t", T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    assert _read(reader, tenant) == set()
    writer.update(tenant, 1, revision=0, by="b", computed=span, note="first")
    assert _read(reader, tenant) == {(1, 1)}
    writer.update(tenant, 1, revision=1, by="b", note="second")
    (note,) = reader.for_read(tenant, *RANGE).column("note").to_pylist()
    assert note == "second"
    # Corrected out of the range: gone from the next read; a person's span appears.
    writer.update(
        tenant, 1, revision=2, by="b", begin_at=T0 + timedelta(hours=7), end_at=T0 + timedelta(8)
    )
    made = writer.create(tenant, "t", T0, T0 + timedelta(minutes=5), by="b")
    assert _read(reader, tenant) == {(made.span_id, 1)}


def test_a_writer_committing_after_a_later_one_is_still_seen(state_url, tenant):
    """A change given the lower history seq commits last: the largest seq would call the kept
    layer (and the last export) current; the snapshot check and the count do not."""
    store = AnnotationStore(create_state_engine(state_url))
    other = AnnotationStore(create_state_engine(state_url))
    for span_id in (1, 2):
        span = ComputedSpan("t", T0 + timedelta(hours=span_id), T0 + timedelta(hours=span_id + 1))
        store.update(tenant, span_id, revision=0, by="a", computed=span, note="start")
    with psycopg.connect(libpq_url(state_url)) as slow:
        # Span 1 changed in a transaction that takes its history seq first, then waits.
        slow.execute(
            "UPDATE span_annotations SET note = 'slow', revision = 2"
            " WHERE tenant = %s AND span_id = 1",
            (tenant,),
        )
        slow.execute(
            "INSERT INTO span_annotation_history"
            " (tenant, span_id, revision, before, after, changed_by, changed_at)"
            " VALUES (%s, 1, 2, %s, %s, 'slow', now())",
            (tenant, Jsonb({}), Jsonb({})),
        )
        other.update(tenant, 2, revision=1, by="b", note="fast")
        notes = store.for_read(tenant, *RANGE).sort_by("span_id").column("note").to_pylist()
        assert notes == ["start", "fast"]
        mark = store.high_water_mark(tenant)
        slow.commit()
    notes = store.for_read(tenant, *RANGE).sort_by("span_id").column("note").to_pylist()
    assert notes == ["slow", "fast"]
    # The sensor's mark moves too, so the late change is exported without waiting for another.
    assert store.high_water_mark(tenant) == mark + 1


def test_every_read_between_random_writes_matches_the_records(state_url, tenant):
    chooser = random.Random(23)
    reader = AnnotationStore(create_state_engine(state_url))
    writers = [AnnotationStore(create_state_engine(state_url)) for _ in range(2)]
    revisions: dict[int, int] = {}
    minutes = [timedelta(minutes=m) for m in range(0, 9 * 60, 15)]
    for step in range(60):
        store = chooser.choice(writers)
        span_id = chooser.randrange(1, 12)
        begin = T0 + chooser.choice(minutes)
        changes: dict[str, Any] = {"note": f"step {step}"}
        if chooser.random() < 0.3:
            changes["end_at"] = begin + chooser.choice(minutes[1:])
        if chooser.random() < 0.2:
            changes["begin_at"] = COMPUTED_BOUND
        if chooser.random() < 0.2:
            store.create(tenant, "t", begin, begin + timedelta(minutes=20), by="w")
        elif span_id in revisions:
            record = store.update(
                tenant, span_id, revision=revisions[span_id], by="w", hidden=step % 3 == 0
            )
            revisions[span_id] = record.revision
        else:
            span = ComputedSpan("t", begin, None if span_id % 4 == 0 else begin + minutes[4])
            changes.pop("begin_at", None)
            record = store.update(tenant, span_id, revision=0, by="w", computed=span, **changes)
            revisions[span_id] = record.revision
        since = T0 - timedelta(hours=chooser.randrange(0, 3))
        end = T0 + chooser.choice(minutes[1:])
        begin_read = T0 + chooser.choice([m for m in minutes if T0 + m < end])
        answer = reader.for_read(tenant, begin_read, end, computed_since=since)
        assert _answered(answer) == _expected(state_url, tenant, begin_read, end, since)
    with psycopg.connect(libpq_url(state_url)) as conn:
        count = conn.execute(
            "SELECT count(*) FROM span_annotations WHERE tenant = %s", (tenant,)
        ).fetchone()
    assert count is not None and reader.records(tenant).num_rows == count[0]


def test_a_session_the_server_ended_since_its_last_use_is_replaced_not_an_error(
    state_url, tenant, admin_conn
):
    store = AnnotationStore(create_state_engine(state_url))
    span = ComputedSpan("t", T0, T0 + timedelta(hours=1))
    store.update(tenant, 1, revision=0, by="a", computed=span, note="before")
    assert _read(store, tenant) == {(1, 1)}
    database = psycopg.conninfo.conninfo_to_dict(libpq_url(state_url))["dbname"]
    ended = admin_conn.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = %s AND application_name = 'tagflow-state'",
        (database,),
    ).fetchone()
    assert ended is not None and ended[0] >= 1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and admin_conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)
    ).fetchone() != (0,):
        time.sleep(0.05)
    assert store.update(tenant, 1, revision=1, by="a", note="after").revision == 2
    assert _read(store, tenant) == {(1, 2)}
