"""The rules of DESIGN §9 on a real state database: records and revisions, the history of every
change, stale revisions, identity per tenant, validation (nothing written on a refusal) and the
columnar reads a span merge uses."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tagflow.annotations import COMPUTED_BOUND, AnnotationStore, ComputedSpan, is_user_span_id
from tagflow.annotations.records import MAX_LABELS, MAX_NOTE_BYTES
from tagflow.annotations.state_database import create_state_engine
from tagflow.errors import Conflict, InvalidAnnotation, UnknownSpan
from tests.annotations.conftest import T0, computed_span

SPAN = 1234567890123


def test_first_change_of_a_computed_span_makes_revision_one_and_one_history_row(store, tenant):
    before = datetime.now(UTC)
    record = store.update(
        tenant, SPAN, revision=0, by="alice", computed=computed_span(), labels={"kind": "baseline"}
    )
    assert (record.revision, record.origin, record.tag_name) == (1, "computed", "reactor.temp")
    assert record.labels == {"kind": "baseline"} and record.note == "" and not record.hidden
    assert record.updated_by == "alice"
    assert before - timedelta(seconds=5) <= record.updated_at <= datetime.now(UTC) + timedelta(5)
    assert record.computed_begin_at == T0
    [change] = store.history(tenant, SPAN)
    assert change.revision == 1 and change.by == "alice" and change.at == record.updated_at
    assert change.before == {
        "labels": {},
        "note": "",
        "begin_at": None,
        "end_at": None,
        "hidden": False,
        "moved_to": None,
    }
    assert change.after["labels"] == {"kind": "baseline"}
    assert store.get(tenant, SPAN) == record


def test_each_change_adds_one_revision_and_only_the_given_fields_change(store, tenant):
    r1 = store.update(tenant, SPAN, revision=0, by="a", computed=computed_span(), note="valve")
    r2 = store.update(tenant, SPAN, revision=1, by="b", labels={"run": "7"})
    r3 = store.update(tenant, SPAN, revision=2, by="c", hidden=True)
    assert (r2.note, r2.labels, r3.note, r3.labels, r3.hidden) == (
        "valve",
        {"run": "7"},
        "valve",
        {"run": "7"},
        True,
    )
    assert [r1.revision, r2.revision, r3.revision] == [1, 2, 3]
    history = store.history(tenant, SPAN)
    assert [(c.revision, c.by) for c in history] == [(1, "a"), (2, "b"), (3, "c")]
    # Each change's before is the previous change's after: nothing is lost from the chain.
    assert all(history[i].after == history[i + 1].before for i in range(2))
    assert history[-1].after["hidden"] is True


def test_a_stale_revision_is_refused_with_the_current_record_and_nothing_written(store, tenant):
    store.update(tenant, SPAN, revision=0, by="a", computed=computed_span(), note="first")
    store.update(tenant, SPAN, revision=1, by="b", note="second")
    with pytest.raises(Conflict) as refused:
        store.update(tenant, SPAN, revision=1, by="c", note="lost?")
    assert refused.value.current.revision == 2 and refused.value.current.note == "second"
    assert "\n" not in str(refused.value)
    assert store.get(tenant, SPAN).note == "second"
    assert len(store.history(tenant, SPAN)) == 2


def test_a_first_change_naming_a_later_revision_is_a_conflict_at_revision_zero(store, tenant):
    with pytest.raises(Conflict) as refused:
        store.update(tenant, SPAN, revision=3, by="a", computed=computed_span(), note="x")
    assert refused.value.current.revision == 0
    assert store.get(tenant, SPAN) is None


def test_an_update_that_changes_nothing_keeps_the_revision(store, tenant):
    store.update(tenant, SPAN, revision=0, by="a", computed=computed_span(), note="same")
    again = store.update(tenant, SPAN, revision=1, by="b", note="same")
    assert again.revision == 1 and again.updated_by == "a"
    assert (
        store.update(tenant, SPAN + 1, revision=0, by="a", computed=computed_span()).revision == 0
    )
    assert store.get(tenant, SPAN + 1) is None
    assert len(store.history(tenant, SPAN)) == 1


def test_a_span_neither_computed_nor_annotated_is_unknown(store, tenant):
    with pytest.raises(UnknownSpan):
        store.update(tenant, SPAN, revision=0, by="a", note="x")


def test_another_tenants_span_is_unknown_not_forbidden(store, tenant):
    store.update(tenant, SPAN, revision=0, by="a", computed=computed_span(), note="mine")
    other = tenant + "_other"
    with pytest.raises(UnknownSpan):
        store.update(other, SPAN, revision=1, by="b", note="theirs")
    assert store.get(other, SPAN) is None and store.history(other, SPAN) == []
    assert store.for_spans(other, [SPAN]).num_rows == 0
    assert store.get(tenant, SPAN).note == "mine"


def test_corrected_bounds_are_checked_against_the_computed_bound_left_in_place(store, tenant):
    computed = computed_span(hours=2)
    # Correcting only the begin past the computed end leaves begin ≥ end: refused.
    with pytest.raises(InvalidAnnotation, match="before"):
        store.update(
            tenant, SPAN, revision=0, by="a", computed=computed, begin_at=T0 + timedelta(3)
        )
    moved = store.update(
        tenant, SPAN, revision=0, by="a", computed=computed, begin_at=T0 + timedelta(minutes=5)
    )
    assert moved.begin_at == T0 + timedelta(minutes=5) and moved.end_at is None
    with pytest.raises(InvalidAnnotation):
        store.update(tenant, SPAN, revision=1, by="a", end_at=T0 + timedelta(minutes=5))
    reset = store.update(tenant, SPAN, revision=1, by="a", begin_at=COMPUTED_BOUND)
    assert reset.begin_at is None and reset.revision == 2
    assert store.history(tenant, SPAN)[-1].before["begin_at"] == "2026-03-01T08:05:00+00:00"


def test_a_run_that_has_not_ended_accepts_any_later_corrected_begin(store, tenant):
    open_run = ComputedSpan("reactor.temp", T0, None)
    record = store.update(
        tenant, SPAN, revision=0, by="a", computed=open_run, begin_at=T0 + timedelta(days=30)
    )
    assert record.computed_end_at is None and record.begin_at == T0 + timedelta(days=30)


def test_a_detached_annotation_is_still_updated_against_its_last_computed_bounds(store, tenant):
    store.update(tenant, SPAN, revision=0, by="a", computed=computed_span(hours=1), note="x")
    # No computed span any more (late data moved its run): the record is still writable.
    with pytest.raises(InvalidAnnotation):
        store.update(tenant, SPAN, revision=1, by="a", begin_at=T0 + timedelta(hours=2))
    assert store.update(tenant, SPAN, revision=1, by="a", note="kept").note == "kept"


def test_times_in_another_zone_come_back_as_the_same_instant_in_utc(store, tenant):
    plus2 = timezone(timedelta(hours=2))
    record = store.update(
        tenant,
        SPAN,
        revision=0,
        by="a",
        computed=computed_span(),
        end_at=datetime(2026, 3, 1, 11, tzinfo=plus2),
    )
    assert record.end_at == datetime(2026, 3, 1, 9, tzinfo=UTC)
    assert record.end_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"labels": {"k": 1}}, "strings"),
        ({"labels": {1: "v"}}, "strings"),
        ({"labels": ["k", "v"]}, "map"),
        ({"labels": {f"k{i}": "v" for i in range(MAX_LABELS + 1)}}, "at most"),
        ({"labels": {"k" * 129: "v"}}, "characters"),
        ({"labels": {"": "v"}}, "characters"),
        ({"labels": {"k": "é" * 2049}}, "bytes"),
        ({"note": "x" * (MAX_NOTE_BYTES + 1)}, "bytes"),
        ({"note": 5}, "string"),
        ({"begin_at": datetime(2026, 3, 1, 8, 30)}, "timezone"),
        ({"end_at": "2026-03-01T09:00:00Z"}, "datetime"),
        ({"hidden": "yes"}, "true or false"),
        ({"end_at": datetime(2300, 1, 1, tzinfo=UTC)}, "years"),
    ],
)
def test_bad_values_are_refused_and_nothing_is_written(store, tenant, fields, message):
    with pytest.raises(InvalidAnnotation, match=message) as refused:
        store.update(tenant, SPAN, revision=0, by="a", computed=computed_span(), **fields)
    assert "\n" not in str(refused.value)
    assert store.get(tenant, SPAN) is None and store.history(tenant, SPAN) == []


def test_limits_are_inclusive(store, tenant):
    labels = {f"{i:0128d}": "v" * 4096 for i in range(MAX_LABELS)}
    record = store.update(
        tenant,
        SPAN,
        revision=0,
        by="a",
        computed=computed_span(),
        labels=labels,
        note="n" * MAX_NOTE_BYTES,
    )
    assert record.labels == labels and len(record.note) == MAX_NOTE_BYTES


def test_a_persons_span_gets_an_id_no_computed_span_takes_and_its_own_bounds(store, tenant):
    first = store.create(
        tenant, "reactor.temp", T0, T0 + timedelta(hours=1), by="alice", labels={"a": "b"}
    )
    second = store.create(tenant, "reactor.temp", T0, T0 + timedelta(hours=1), by="alice")
    assert is_user_span_id(first.span_id) and is_user_span_id(second.span_id)
    assert first.span_id != second.span_id
    assert (first.origin, first.revision, first.begin_at, first.labels) == (
        "user",
        1,
        T0,
        {"a": "b"},
    )
    assert first.computed_begin_at is None
    [change] = store.history(tenant, first.span_id)
    assert change.before is None and change.after["begin_at"] == "2026-03-01T08:00:00+00:00"
    moved = store.update(
        tenant, first.span_id, revision=1, by="bob", end_at=T0 + timedelta(hours=3)
    )
    assert moved.end_at == T0 + timedelta(hours=3) and moved.revision == 2
    with pytest.raises(InvalidAnnotation, match="no computed bound"):
        store.update(tenant, first.span_id, revision=2, by="bob", begin_at=COMPUTED_BOUND)
    with pytest.raises(InvalidAnnotation):
        store.update(tenant, first.span_id, revision=2, by="bob", begin_at=T0 + timedelta(hours=3))
    with pytest.raises(UnknownSpan):
        store.update(tenant + "_x", first.span_id, revision=2, by="bob", note="x")


@pytest.mark.parametrize(
    "begin, end", [(T0, T0), (T0 + timedelta(1), T0), (datetime(2026, 3, 1), T0)]
)
def test_a_persons_span_needs_ordered_aware_bounds(store, tenant, begin, end):
    with pytest.raises(InvalidAnnotation):
        store.create(tenant, "reactor.temp", begin, end, by="a")
    assert store.records(tenant).num_rows == 0


def test_for_spans_returns_the_annotated_ones_as_columns(store, tenant):
    store.update(tenant, 1, revision=0, by="a", computed=computed_span(), labels={"x": "1"})
    store.update(tenant, 2, revision=0, by="a", computed=computed_span(), hidden=True)
    store.update(tenant, 2, revision=1, by="b", end_at=T0 + timedelta(hours=1))
    table = store.for_spans(tenant, [2, 1, 3, 2]).sort_by("span_id")
    rows = table.to_pylist()
    assert [r["span_id"] for r in rows] == [1, 2]
    assert json.loads(rows[0]["labels"]) == {"x": "1"} and rows[0]["revision"] == 1
    assert rows[1]["hidden"] is True and rows[1]["revision"] == 2 and rows[1]["updated_by"] == "b"
    assert rows[1]["end_at"] == T0 + timedelta(hours=1) and rows[1]["begin_at"] is None
    assert rows[1]["computed_begin_at"] == T0 and rows[1]["origin"] == "computed"
    assert store.for_spans(tenant, []).num_rows == 0


def test_for_read_finds_spans_by_their_corrected_bounds(store, tenant):
    day = timedelta(days=1)
    store.update(tenant, 1, revision=0, by="a", computed=computed_span(), note="in")
    # Computed on the first day, corrected to end on the third: in a read of the third day.
    store.update(tenant, 2, revision=0, by="a", computed=computed_span(), end_at=T0 + 2 * day)
    own = store.create(tenant, "t", T0 + 5 * day, T0 + 6 * day, by="a")

    def ids(begin, end, since=None):
        table = store.for_read(tenant, begin, end, computed_since=since)
        return sorted(table.column("span_id").to_pylist())

    assert ids(T0, T0 + day) == [1, 2]
    assert ids(T0 + 1.5 * day, T0 + 3 * day) == [2]
    assert ids(T0 + 4 * day, T0 + 10 * day) == [own.span_id]
    assert ids(T0 + 7 * day, T0 + 8 * day) == []
    # A read that found computed spans beginning at T0 gets their annotations whatever their
    # stored end (late data may have made the run longer).
    assert ids(T0 + 7 * day, T0 + 8 * day, since=T0) == [1, 2]
    assert ids(T0 + 7 * day, T0 + 8 * day, since=T0 + timedelta(minutes=1)) == []


def test_columnar_reads_keep_every_microsecond(store, tenant):
    moments = [
        datetime(1800, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 3, 1, 8, 0, 0, 123457, tzinfo=UTC),
        datetime(2199, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    for moment in moments:
        end = moment + timedelta(microseconds=1)
        store.create(tenant, "t", moment, end, by="a")
    rows = store.records(tenant).to_pylist()
    assert [(r["begin_at"], r["end_at"] - r["begin_at"]) for r in rows] == [
        (m, timedelta(microseconds=1)) for m in moments
    ]


def test_columnar_reads_keep_every_character_and_null(store, tenant):
    note = 'line one, "quoted"\nline two\r\n,,é\\N'
    labels = {"a,b": 'x"y', "nl": "1\n2", "empty": ""}
    store.update(tenant, 1, revision=0, by='o"neil, jr', computed=computed_span(), note=note)
    store.update(tenant, 1, revision=1, by="b", labels=labels)
    store.update(tenant, 2, revision=0, by="a", computed=ComputedSpan("t", T0, None), hidden=True)
    rows = store.for_spans(tenant, [1, 2]).sort_by("span_id").to_pylist()
    assert rows[0]["note"] == note and json.loads(rows[0]["labels"]) == labels
    assert rows[1]["note"] == "" and rows[1]["computed_end_at"] is None
    assert rows[1]["begin_at"] is None and rows[1]["hidden"] is True
    assert store.records(tenant).to_pylist() == rows


def test_the_high_water_mark_grows_with_every_change_and_not_otherwise(store, tenant):
    start = store.high_water_mark(tenant)
    assert start == 0
    store.update(tenant, 1, revision=0, by="a", computed=computed_span(), note="x")
    one = store.high_water_mark(tenant)
    store.update(tenant, 1, revision=1, by="a", note="x")  # no change
    assert store.high_water_mark(tenant) == one > 0
    store.create(tenant, "t", T0, T0 + timedelta(hours=1), by="a")
    assert store.high_water_mark(tenant) > one
    assert store.high_water_mark() >= store.high_water_mark(tenant)


def test_records_of_a_tenant_are_its_annotations_only(store, tenant):
    store.update(tenant, 5, revision=0, by="a", computed=computed_span(), note="x")
    store.update(tenant + "_b", 6, revision=0, by="a", computed=computed_span(), note="y")
    assert store.records(tenant).column("span_id").to_pylist() == [5]


def test_the_writer_label_is_required(store, tenant):
    with pytest.raises(InvalidAnnotation):
        store.update(tenant, SPAN, revision=0, by=" ", computed=computed_span(), note="x")


def test_a_second_store_on_the_same_database_sees_the_same_records(state_url, store, tenant):
    store.update(tenant, SPAN, revision=0, by="a", computed=computed_span(), note="x")
    assert AnnotationStore(create_state_engine(state_url)).get(tenant, SPAN).note == "x"


def test_a_detached_annotation_kept_as_a_persons_span(store, tenant):
    store.update(tenant, SPAN, revision=0, by="a", computed=computed_span(), labels={"k": "v"})
    store.update(tenant, SPAN, revision=1, by="a", note="why", end_at=T0 + timedelta(hours=1))
    own = store.move(tenant, SPAN, revision=2, by="b")
    assert is_user_span_id(own.span_id) and own.origin == "user" and own.revision == 1
    assert (own.labels, own.note, own.begin_at, own.end_at) == (
        {"k": "v"},
        "why",
        T0,
        T0 + timedelta(hours=1),
    )
    left = store.get(tenant, SPAN)
    assert (left.revision, left.moved_to, left.hidden, left.note) == (3, own.span_id, True, "why")
    assert store.history(tenant, SPAN)[-1].after["moved_to"] == own.span_id
    assert store.history(tenant, own.span_id)[0].before is None
    with pytest.raises(InvalidAnnotation, match="already moved"):
        store.move(tenant, SPAN, revision=3, by="b")


def test_a_detached_annotation_moved_onto_another_computed_span(store, tenant):
    store.update(tenant, SPAN, revision=0, by="a", computed=computed_span(), labels={"k": "v"})
    later = ComputedSpan("reactor.temp", T0 + timedelta(minutes=7), None)
    with pytest.raises(Conflict):
        store.move(tenant, SPAN, revision=0, by="b", to_span_id=99, to_computed=later)
    moved = store.move(tenant, SPAN, revision=1, by="b", to_span_id=0, to_computed=later)
    assert (moved.span_id, moved.origin, moved.labels, moved.revision) == (
        0,
        "computed",
        {"k": "v"},
        1,
    )
    assert moved.computed_begin_at == later.begin_at and moved.begin_at is None
    assert store.get(tenant, SPAN).moved_to == 0
    # A span that already has an annotation is not overwritten.
    store.update(tenant, 5, revision=0, by="a", computed=computed_span(), note="x")
    store.update(tenant, 6, revision=0, by="a", computed=computed_span(), note="y")
    with pytest.raises(Conflict) as refused:
        store.move(tenant, 5, revision=1, by="b", to_span_id=6, to_computed=computed_span())
    assert refused.value.current.note == "y"
    assert store.get(tenant, 5).moved_to is None and store.get(tenant, 5).revision == 1


def test_a_move_needs_an_annotation_and_a_known_end(store, tenant):
    with pytest.raises(UnknownSpan):
        store.move(tenant, SPAN, revision=0, by="b")
    store.update(tenant, SPAN, revision=0, by="a", computed=ComputedSpan("t", T0, None), note="x")
    with pytest.raises(InvalidAnnotation, match="end_at"):
        store.move(tenant, SPAN, revision=1, by="b")
    own = store.move(tenant, SPAN, revision=1, by="b", end_at=T0 + timedelta(days=1))
    assert own.end_at == T0 + timedelta(days=1)


def test_the_history_table_holds_every_change_of_the_tenant_in_order(store, tenant):
    store.update(tenant, 3, revision=0, by="a", computed=computed_span(), note="x")
    own = store.create(tenant, "t", T0, T0 + timedelta(hours=1), by="b", labels={"k": "v"})
    store.update(tenant, 3, revision=1, by="c", hidden=True)
    store.update(tenant + "_b", 3, revision=0, by="z", computed=computed_span(), note="other")
    rows = store.history_table(tenant).to_pylist()
    assert [(r["span_id"], r["revision"], r["changed_by"]) for r in rows] == [
        (3, 1, "a"),
        (own.span_id, 1, "b"),
        (3, 2, "c"),
    ]
    assert rows[0]["seq"] < rows[1]["seq"] < rows[2]["seq"]
    assert rows[1]["before"] is None and json.loads(rows[1]["after"])["labels"] == {"k": "v"}
    assert json.loads(rows[2]["before"])["hidden"] is False
    assert rows[2]["changed_at"] == store.get(tenant, 3).updated_at
    assert store.history_table(tenant + "_none").num_rows == 0


@pytest.mark.parametrize("span_id", [2**63, -(2**63) - 1, 10**30])
def test_an_id_no_span_can_have_is_unknown(store, tenant, span_id):
    with pytest.raises(UnknownSpan):
        store.update(tenant, span_id, revision=0, by="a", computed=computed_span(), note="x")
    with pytest.raises(UnknownSpan):
        store.history(tenant, span_id)


def test_an_id_that_is_not_a_whole_number_is_refused(store, tenant):
    for span_id in ("12", 1.0, True):
        with pytest.raises(InvalidAnnotation, match="whole number"):
            store.update(tenant, span_id, revision=0, by="a", computed=computed_span(), note="x")
