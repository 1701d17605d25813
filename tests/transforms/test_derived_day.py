"""A derived tag's day (transforms.derived.day) against the brute-force reference over the
whole multi-day history: the value and true start of the run held at 00:00 (walked back over
as many days as it takes), the day's transitions, and the spans the day's chain rebuilds from
them with the inputs' deaths, on hypothesis-generated histories. Also the pieces of the
derived tags' further deaths, and the day's tables written between the source tags' chunks."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tagflow.schemas import arrow as S
from tagflow.transforms.columns import NO_TIME, time_us
from tagflow.transforms.derived.day import (
    FIRST_WINDOW_US,
    DerivedPlan,
    compute_derived_day,
    value_kinds,
)
from tagflow.transforms.derived.definitions import parse_definitions
from tagflow.transforms.derived.expression import parse_expression, render
from tagflow.transforms.pieces import pieces_for_window
from tagflow.transforms.tag_order import TagOrder
from tagflow.transforms.transitions import carry_in_for_day
from tests.transforms.builders import (
    DAY,
    HOUR,
    raw_carry_in_table,
    raw_rows_table,
    tags_table,
    to_dt,
)
from tests.transforms.reference import RawRow, Tag
from tests.transforms.test_derived_evaluate import (
    expressions,
    reference_pieces,
    reference_refs,
    same,
)

D0 = 20 * DAY  # the partition's day starts here (µs since the epoch)
D1 = D0 + DAY
NAMES = {1: "a", 2: "b", 3: "s"}


class MemoryHistory:
    """InputHistory over a list of raw rows; counts what it is asked for."""

    def __init__(self, rows: list[RawRow]) -> None:
        self.rows = rows
        self.calls = 0

    def rows_before(self, tag_ids, lo_us, hi_us) -> pa.Table:
        self.calls += 1
        upper = dict(zip(map(int, tag_ids), map(int, hi_us), strict=True))
        kept = [r for r in self.rows if r.tag_id in upper and lo_us <= r.time_us < upper[r.tag_id]]
        return raw_rows_table(kept, -(2**62), 2**62)

    def first_row_times(self, tag_ids) -> np.ndarray:
        firsts = []
        for tag_id in tag_ids:
            times = [r.time_us for r in self.rows if r.tag_id == int(tag_id)]
            firsts.append(min(times) if times else NO_TIME)
        return np.array(firsts, dtype=np.int64)


def definitions_of(text: str, name: str = "derived/x"):
    escaped = text.replace("'", "''")
    return parse_definitions(
        f"tenants:\n  acme:\n    - name: {name}\n      expression: '{escaped}'\n"
    ).for_tenant("acme")


def day_of(expression: str, tags: list[Tag], rows: list[RawRow]):
    definitions = definitions_of(expression)
    source = tags_table(tags, rows)
    plan = DerivedPlan.of(definitions, source)
    history = MemoryHistory(rows)
    day = compute_derived_day(
        plan,
        raw_rows_table(rows, D0, D1),
        raw_carry_in_table(rows, tags, D0),
        to_dt(D0),
        to_dt(D1),
        "acme",
        history,
    )
    return day, history


# --- the reference ---------------------------------------------------------------------------


def reference_history(tag: Tag, rows: list[RawRow]) -> list[tuple[int, int | None, object]]:
    """A source tag's step function (DESIGN §2) as pieces: each row holds until the next; a
    death ends the piece it falls in (a row at the death instant holds for no time)."""
    mine = sorted((r for r in rows if r.tag_id == tag.tag_id), key=lambda r: r.time_us)
    pieces = []
    for k, row in enumerate(mine):
        end = mine[k + 1].time_us if k + 1 < len(mine) else None
        death = tag.death_at_us
        if death is not None and row.time_us <= death and (end is None or death < end):
            end = death
        if end is None or end > row.time_us:
            pieces.append((row.time_us, end, row.value))
    return pieces


def expected_carry_in(pieces, tags: list[Tag], inputs: list[str]):
    """(run start, value) held at D0 by the reference, or None: defined just before D0 and
    not ended at D0 by a death (a death at 00:00 takes effect at 00:00, as for source tags)."""
    for start, end, value in pieces:
        if start < D0 and (end is None or end >= D0):
            deaths = {t.death_at_us for t in tags if t.name in inputs}
            if end == D0 and D0 in deaths:
                return None
            return start, value
    return None


# --- hand-worked: the run held at 00:00 ------------------------------------------------------


def test_the_run_held_at_midnight_began_three_days_before_the_partition():
    """a > 280 holds since day -3 10:00 while a changes every few hours (always above 280), and
    b = 'RUNNING' since day -5: the walk back reads three days of a and finds 10:00."""
    rows = [RawRow(1, D0 - 4 * DAY + h * HOUR, 250.0, False) for h in range(0, 24, 6)]
    began = D0 - 3 * DAY + 10 * HOUR
    rows += [RawRow(1, began + h * 3 * HOUR, 281.0 + h, False) for h in range(0, 21)]
    rows += [RawRow(2, D0 - 5 * DAY, "RUNNING", True), RawRow(1, D0 + 2 * HOUR, 100.0, False)]
    tags = [Tag(1, "a"), Tag(2, "b")]
    day, history = day_of("a > 280 and b = 'RUNNING'", tags, rows)
    carry = day.tables["carry_in"].to_pylist()
    assert [(r["time"], r["value_double"], r["run_begin_at"]) for r in carry] == [
        (to_dt(began), 1.0, to_dt(began))
    ]
    spans = day.tables["spans"].to_pylist()
    assert [(s["raw_begin_at"], s["begin_at"], s["end_at"], s["value_double"]) for s in spans] == [
        (to_dt(began), to_dt(D0), to_dt(D0 + 2 * HOUR), 1.0),
        (to_dt(D0 + 2 * HOUR), to_dt(D0 + 2 * HOUR), to_dt(D1), 0.0),
    ]
    # Windows of 1 day then 2 then 4 (from a's latest change): three reads at most.
    assert history.calls <= 3


def test_a_run_that_began_with_the_inputs_first_rows():
    rows = [RawRow(1, D0 - 9 * DAY, 300.0, False), RawRow(2, D0 - 7 * DAY, 1.0, False)]
    rows += [RawRow(1, D0 - 9 * DAY + k * HOUR, 300.0 + k, False) for k in range(1, 100)]
    day, _ = day_of("a > b", [Tag(1, "a"), Tag(2, "b")], rows)
    (carry,) = day.tables["carry_in"].to_pylist()
    assert carry["run_begin_at"] == to_dt(D0 - 7 * DAY)  # b's first row: defined from then


def test_a_death_between_breaks_the_run():
    """b dies at day -2 and comes back at day -1 with the same value: the run starts then."""
    rows = [RawRow(1, D0 - 6 * DAY, 1.0, False), RawRow(2, D0 - 6 * DAY, 1.0, False)]
    rows += [RawRow(2, D0 - DAY, 1.0, False)]
    tags = [Tag(1, "a"), Tag(2, "b", death_at_us=D0 - 2 * DAY)]
    day, _ = day_of("a = b", tags, rows)
    (carry,) = day.tables["carry_in"].to_pylist()
    assert carry["run_begin_at"] == to_dt(D0 - DAY)


# --- further deaths: pieces and carry-in -----------------------------------------------------


def derived_order(deaths: list[int]) -> TagOrder:
    table = pa.table(
        {
            "tag_id": pa.array([-5], pa.int32()),
            "tag_name": ["x"],
            "birth_at": pa.nulls(1, S.TS),
            "death_at": pa.nulls(1, S.TS),
            "value_kind": ["numeric"],
            "input_deaths": pa.array([deaths], pa.list_(pa.int64())).cast(pa.list_(S.TS)),
        }
    )
    return TagOrder.from_table(S.conform(table, S.TAGS_DATASET))


def test_a_derived_tag_becomes_undefined_at_each_input_death():
    order = derived_order([D0 + 2 * HOUR, D0 + 5 * HOUR, D0 - DAY])
    transitions = pa.table(
        {
            "tag_id": pa.array([-5, -5], pa.int32()),
            "tag_name": ["x", "x"],
            "time": pa.array([to_dt(D0 + HOUR), to_dt(D0 + 3 * HOUR)], S.TS),
            "value_double": [1.0, 2.0],
            "value_string": pa.array([None, None], pa.string()),
            "value_kind": ["numeric", "numeric"],
        },
        schema=S.TRANSITIONS,
    )
    pieces = pieces_for_window(transitions, S.CARRY_IN.empty_table(), order, D1)
    assert pieces.start.tolist() == [D0 + HOUR, D0 + 3 * HOUR]
    assert pieces.end.tolist() == [D0 + 2 * HOUR, D0 + 5 * HOUR]
    raw = pa.table(
        {
            "tag_id": pa.array([-5], pa.int32()),
            "time": pa.array([to_dt(D0 - 2 * DAY)], S.TS),
            "value_double": [1.0],
            "value_string": pa.array([None], pa.string()),
            "is_string": [False],
            "run_begin_at": pa.array([to_dt(D0 - 2 * DAY)], S.TS),
        },
        schema=S.RAW_CARRY_IN,
    )
    assert carry_in_for_day(raw, order, to_dt(D0)).num_rows == 0  # died at day -1
    assert carry_in_for_day(raw, derived_order([D0 - 3 * DAY]), to_dt(D0)).num_rows == 1


def test_value_kinds_follow_the_expression():
    kinds = {"n": frozenset({"numeric"}), "s": frozenset({"string"})}
    assert value_kinds(parse_expression("n > 1"), kinds) == {"numeric"}
    assert value_kinds(parse_expression("s"), kinds) == {"string"}
    assert value_kinds(parse_expression("max(s, n)"), kinds) == {"numeric", "string"}
    assert value_kinds(parse_expression("s = 'A'"), kinds) == {"numeric"}


def test_positions_and_cuts_place_derived_tags_in_name_order():
    rows = [RawRow(1, D0, 1.0, False)]
    tags = [Tag(1, "a"), Tag(2, "m"), Tag(3, "z")]
    text = (
        "tenants:\n  acme:\n    - {name: 0first, expression: a}\n"
        "    - {name: n1, expression: a}\n    - {name: n2, expression: a}\n"
        "    - {name: zz, expression: a}\n"
    )
    plan = DerivedPlan.of(parse_definitions(text).for_tenant("acme"), tags_table(tags, rows))
    assert plan.positions() == [0, 2, 2, 3]
    assert plan.cuts() == [2]
    assert plan.input_ids.tolist() == [1]


# --- the brute-force reference over several days --------------------------------------------

VALUES = [0.0, 1.0, 2.0, 300.0, math.nan, math.inf, None, "A", "RUNNING"]


@st.composite
def multi_day_rows(draw) -> tuple[list[Tag], list[RawRow]]:
    """Rows of a, b and s over days -12 .. +1 at hour granularity (a few at 00:00 exactly),
    repeated values common, and a death (maybe at 00:00 of the day) for some tags."""
    tags, rows = [], []
    hours = st.integers(-12 * 24, 24)
    for tag_id, name in NAMES.items():
        times = sorted(draw(st.sets(hours, max_size=12)))
        values = draw(st.lists(st.sampled_from(VALUES), min_size=len(times), max_size=len(times)))
        for hour, value in zip(times, values, strict=True):
            rows.append(RawRow(tag_id, D0 + hour * HOUR, value, isinstance(value, str)))
        death = draw(st.one_of(st.none(), hours))
        tags.append(Tag(tag_id, name, None if death is None else D0 + death * HOUR))
    return tags, rows


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions, multi_day_rows())
def test_the_day_equals_the_brute_force_reference_over_the_whole_history(expression, data):
    tags, rows = data
    names = sorted(set(reference_refs(expression)))
    assume(names)
    history = {t.name: reference_history(t, rows) for t in tags}
    expected = reference_pieces(expression, history)
    day, _ = day_of(render(expression), tags, rows)

    carry = day.tables["carry_in"].to_pylist()
    want = expected_carry_in(expected, tags, names)
    if want is None:
        assert carry == []
    else:
        (row,) = carry
        got = row["value_string"] if row["value_kind"] == "string" else row["value_double"]
        assert time_us(pa.array([row["run_begin_at"]], S.TS))[0] == want[0]
        assert same(got, want[1]), (got, want)

    transitions = day.tables["transitions"]
    got_times = time_us(transitions.column("time")).tolist()
    assert got_times == [start for start, _, _ in expected if D0 <= start < D1]

    # The spans the day's chain rebuilds from transitions, carry-in and the inputs' deaths
    # are the reference's pieces clipped to the day.
    spans = day.tables["spans"]
    got_spans = list(
        zip(
            time_us(spans.column("raw_begin_at")).tolist(),
            time_us(spans.column("end_at")).tolist(),
            strict=True,
        )
    )
    want_spans = [
        (start, min(end if end is not None else D1, D1))
        for start, end, _ in expected
        if start < D1 and (end is None or end > D0)
    ]
    assert got_spans == want_spans


def test_window_width_starts_at_one_day():
    assert FIRST_WINDOW_US == DAY


def test_the_tags_rows_of_derived_tags():
    rows = [RawRow(1, D0, 1.0, False), RawRow(3, D0, "A", True)]
    tags = [Tag(1, "a", death_at_us=D0 + HOUR), Tag(3, "s")]
    text = (
        "tenants:\n  acme:\n    - {name: x, expression: 'a > 0', description: hot}\n"
        "    - {name: y, expression: 'x and s = ''A'''}\n"
    )
    plan = DerivedPlan.of(parse_definitions(text).for_tenant("acme"), tags_table(tags, rows))
    table = plan.tags
    assert table.schema == S.TAGS_DATASET
    assert table.column("tag_name").to_pylist() == ["x", "y"]
    assert all(v < 0 for v in table.column("tag_id").to_pylist())
    assert table.column("derived").to_pylist() == [True, True]
    assert table.column("expression").to_pylist() == ["a > 0", "x and s = 'A'"]
    assert table.column("description").to_pylist() == ["hot", None]
    deaths = pc.list_value_length(table.column("input_deaths")).to_pylist()
    assert deaths == [1, 1]  # a's death, directly and through x
    assert table.column("value_kind").to_pylist() == ["numeric", "numeric"]


def test_batches_of_inputs_give_the_same_day(monkeypatch):
    """Derived tags evaluated a few inputs at a time (memory follows a batch) give the day
    they give evaluated at once, derived tags read by others included."""
    import tagflow.transforms.derived.day as derived_day

    rows = [RawRow(1, D0 - DAY + k * HOUR, float(k % 5), False) for k in range(48)]
    rows += [RawRow(2, D0 - DAY + k * 3 * HOUR, float(k % 3), False) for k in range(16)]
    rows += [RawRow(3, D0 - 2 * DAY + k * 5 * HOUR, "AB"[k % 2], True) for k in range(14)]
    tags = [Tag(1, "a"), Tag(2, "b", death_at_us=D0 + 7 * HOUR), Tag(3, "s")]
    text = (
        "tenants:\n  acme:\n    - {name: x, expression: 'a > 2'}\n"
        "    - {name: y, expression: 'b + a'}\n    - {name: z, expression: 'x and s = ''A'''}\n"
        "    - {name: w, expression: 'min(s, ''B'')'}\n"
    )
    plan = DerivedPlan.of(parse_definitions(text).for_tenant("acme"), tags_table(tags, rows))

    def compute():
        return compute_derived_day(
            plan,
            raw_rows_table(rows, D0, D1),
            raw_carry_in_table(rows, tags, D0),
            to_dt(D0),
            to_dt(D1),
            "acme",
            MemoryHistory(rows),
        )

    whole = compute()
    monkeypatch.setattr(derived_day, "DERIVED_BATCH_ROWS", 1)
    assert len(derived_day._batches(plan, np.full(3, 10))) == 4
    batched = compute()
    assert batched.tables.keys() == whole.tables.keys()
    for name, table in whole.tables.items():
        assert batched.tables[name].equals(table), name
    assert whole.tables["transitions"].num_rows > 20
    assert (batched.present, batched.version) == (whole.present, whole.version)
