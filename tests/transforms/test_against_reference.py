"""Hypothesis properties: the implementation equals the brute-force reference on random
small histories around a few midnights.

Times sit on a coarse 7.5-minute grid (plus points at and next to each midnight and a
few jittered ones), so rows collide with midnight, hour edges, each other and death_at
often. Values include NaN, ±inf, NULL, -0.0 and strings with ties; tags may be numeric,
string or mixed, may die (sometimes exactly at a row or at midnight) and come back, and
some rows belong to no tag (orphans).
"""

from __future__ import annotations

import math

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tagflow.schemas import arrow as S
from tests.transforms.builders import (
    DAY,
    HOUR,
    MINUTE,
    Window,
    assert_rows_equal,
    call_rollup,
    plain_rows,
    to_dt,
    us,
)
from tests.transforms.reference import Reference, Tag

TENANT = "acme"
STEP = 450 * 1_000_000  # 7.5 minutes
HIST_START = us("2026-02-28 12:00")
N_STEPS = 3 * 24 * 8  # up to 2026-03-03 12:00
MIDNIGHTS = [us("2026-03-01"), us("2026-03-02"), us("2026-03-03")]
DAYS = MIDNIGHTS[:2]  # days whose outputs are checked: 03-01 and 03-02

TAG_IDS = [1, 2, 17, 300, 2_147_483_647]
TAG_NAMES = ["a", "B", "b", "T1", "é", "Z_9"]
ORPHAN_ID = 99

NUMBERS = [None, math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0, 2.5, -3.0, 1000.0, 0.1]
STRINGS = [None, "", "a", "b", "B", "ab", "é"]

SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

grid_time = st.integers(0, N_STEPS - 1).map(lambda k: HIST_START + k * STEP)
near_midnight = st.tuples(
    st.sampled_from(MIDNIGHTS), st.sampled_from([-STEP, -1, 0, 0, 1, STEP])
).map(sum)
jittered = st.tuples(grid_time, st.sampled_from([1, 30_000_000, 59_999_999])).map(sum)
times = st.one_of(grid_time, grid_time, grid_time, near_midnight, jittered)


@st.composite
def histories(draw):
    """(rows, tags): rows are (tag_id, time_us, value, is_string) over ~3 days."""
    n_tags = draw(st.integers(1, 4))
    ids = draw(st.permutations(TAG_IDS))[:n_tags]
    names = draw(st.permutations(TAG_NAMES))[:n_tags]
    profiles = [draw(st.sampled_from(["numeric", "numeric", "string", "mixed"])) for _ in ids]
    candidates = list(range(n_tags)) + [None]  # None: an orphan row

    def value_row(tag_idx, time):
        if tag_idx is None:
            tag_id, profile = ORPHAN_ID, "mixed"
        else:
            tag_id, profile = ids[tag_idx], profiles[tag_idx]
        is_string = profile == "string" or (profile == "mixed" and draw(st.booleans()))
        value = draw(st.sampled_from(STRINGS if is_string else NUMBERS))
        return (tag_id, time, value, is_string)

    rows = []
    for _ in range(draw(st.integers(0, 24))):
        tag_idx = draw(st.sampled_from(candidates))
        # repeat a tag's previous value sometimes so equal-value runs span rows
        if rows and draw(st.integers(0, 3)) == 0:
            tag_id, prev_time, value, is_string = draw(st.sampled_from(rows))
            if value is None and draw(st.booleans()):
                is_string = not is_string  # NULL of the other table: the same value
            soon = st.integers(1, 3).map(lambda k, t0=prev_time: t0 + k * STEP)
            rows.append((tag_id, draw(st.one_of(times, soon)), value, is_string))
        else:
            rows.append(value_row(tag_idx, draw(times)))
    # bursts: one tag changing at consecutive grid steps, so several values share a
    # bucket (ties of held time for the string mode, min/max/first/last inside buckets)
    for _ in range(draw(st.integers(0, 2))):
        tag_idx = draw(st.sampled_from(candidates))
        start = draw(st.one_of(grid_time, near_midnight))
        step = draw(st.sampled_from([30_000_000, STEP, 4 * STEP]))
        for k in range(draw(st.integers(2, 6))):
            rows.append(value_row(tag_idx, start + k * step))
    # explicit duplicates: more rows for the same tag at an existing instant
    for _ in range(draw(st.integers(0, 5)) if rows else 0):
        tag_id, time, _, _ = draw(st.sampled_from(rows))
        idx = ids.index(tag_id) if tag_id in ids else None
        rows.append(value_row(idx, time))
    tags = []
    for i, tag_id in enumerate(ids):
        own_times = [r[1] for r in rows if r[0] == tag_id]
        choices = [st.none(), st.none(), times]
        if own_times:
            choices.append(st.sampled_from(own_times))
        death = draw(st.one_of(*choices))
        tags.append(Tag(tag_id, names[i], death_at_us=death, birth_at_us=HIST_START))
    return rows, tags


def _with_datetimes(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Reference rows (µs integers) → an Arrow table of `schema`."""
    ts_cols = [f.name for f in schema if pa.types.is_timestamp(f.type)]
    converted = [{k: (to_dt(v) if k in ts_cols else v) for k, v in r.items()} for r in rows]
    return pa.Table.from_pylist(converted, schema=schema)


def _samples(window: Window, width: int, offset: int = 0):
    result = window.samples(width, offset)
    return plain_rows(result.numeric, S.SAMPLES), plain_rows(result.string, S.SAMPLES_STR)


# ---------------------------------------------------------------- transitions, carry-in


@settings(SETTINGS, max_examples=120)
@given(histories())
def test_resolved_transitions_and_stats_match_reference(history):
    rows, tags = history
    ref = Reference(rows, tags, TENANT)
    for d0 in DAYS:
        w = Window(rows, tags, d0, d0 + DAY, TENANT)
        expected, expected_stats = ref.transitions(d0, d0 + DAY)
        assert_rows_equal(plain_rows(w.transitions, S.TRANSITIONS), expected, "transitions")
        assert {k: int(w.stats[k]) for k in expected_stats} == expected_stats
        assert (
            w.stats["rows_in"]
            == w.transitions.num_rows + w.stats["duplicates_dropped"] + w.stats["orphans_skipped"]
        )


@settings(SETTINGS, max_examples=120)
@given(histories())
def test_carry_in_keeps_alive_tags_with_true_run_begin(history):
    rows, tags = history
    ref = Reference(rows, tags, TENANT)
    for d0 in MIDNIGHTS:
        w = Window(rows, tags, d0, d0 + DAY, TENANT)
        assert_rows_equal(plain_rows(w.carry_in, S.CARRY_IN), ref.carry_in(d0), "carry-in")


# ---------------------------------------------------------------- spans


@settings(SETTINGS, max_examples=150)
@given(histories())
def test_spans_match_reference_and_stitch_across_midnight(history):
    rows, tags = history
    ref = Reference(rows, tags, TENANT)
    per_day = []
    for d0 in MIDNIGHTS:
        got = plain_rows(Window(rows, tags, d0, d0 + DAY, TENANT).spans(), S.SPANS)
        assert_rows_equal(got, ref.spans(d0, d0 + DAY), f"spans of {to_dt(d0):%Y-%m-%d}")
        per_day.append(got)
    # a run still open at the end of a day continues next day under the same id and
    # raw_begin_at, unless it ends exactly at midnight
    for d0, today, tomorrow in zip(MIDNIGHTS[:-1], per_day[:-1], per_day[1:], strict=True):
        next_ids = {s["id"]: s for s in tomorrow}
        for s in today:
            if s["raw_end_at"] is not None:
                continue
            assert s["end_at"] == d0 + DAY
            cont = next_ids.get(s["id"])
            if cont is None:
                run = [r for r in ref.runs(s["tag_id"]) if r.start_us == s["raw_begin_at"]][0]
                assert run.end_us == d0 + DAY
            else:
                assert cont["raw_begin_at"] == s["raw_begin_at"]
                assert cont["begin_at"] == d0 + DAY


# ---------------------------------------------------------------- samples


@settings(SETTINGS, max_examples=100)
@given(histories(), st.sampled_from(DAYS))
def test_samples_match_reference_at_minute_hour_and_day(history, d0):
    rows, tags = history
    ref = Reference(rows, tags, TENANT)
    w = Window(rows, tags, d0, d0 + DAY, TENANT)
    for width in (MINUTE, HOUR, DAY):
        numeric, string = _samples(w, width)
        exp_numeric, exp_string = ref.samples(d0, d0 + DAY, width)
        assert_rows_equal(numeric, exp_numeric, f"numeric samples, width {width // MINUTE} min")
        assert_rows_equal(string, exp_string, f"string samples, width {width // MINUTE} min")


ODD_WIDTH = 7 * MINUTE
ODD_OFFSET = 3 * MINUTE


@settings(SETTINGS, max_examples=80)
@given(histories(), st.integers(-40, 160), st.integers(1, 80))
def test_samples_match_reference_at_odd_width_and_offset(history, first_bucket, n_buckets):
    """7-minute buckets offset by 3 minutes over a window of whole buckets, often
    crossing midnight; the implementation gets the window's rows and the carry-in at
    the window start."""
    rows, tags = history
    base = MIDNIGHTS[1] - ((MIDNIGHTS[1] - ODD_OFFSET) % ODD_WIDTH)
    ws = base + first_bucket * ODD_WIDTH
    we = ws + n_buckets * ODD_WIDTH
    ref = Reference(rows, tags, TENANT)
    numeric, string = _samples(Window(rows, tags, ws, we, TENANT), ODD_WIDTH, ODD_OFFSET)
    exp_numeric, exp_string = ref.samples(ws, we, ODD_WIDTH, ODD_OFFSET)
    assert_rows_equal(numeric, exp_numeric, "numeric samples 7m+3m")
    assert_rows_equal(string, exp_string, "string samples 7m+3m")


@settings(SETTINGS, max_examples=40)
@given(
    histories(),
    st.integers(-3000, 3000),
    st.integers(1, 600),
    st.sampled_from([7 * MINUTE, HOUR, DAY]),
)
def test_samples_of_window_cutting_buckets_match_reference(history, start, length, width):
    """Window bounds on a 30-second grid, not on bucket edges: only the part of each
    bucket inside the window counts; bucket_start stays the aligned start."""
    rows, tags = history
    ws = MIDNIGHTS[1] + start * 30_000_000
    we = ws + length * 30_000_000
    ref = Reference(rows, tags, TENANT)
    numeric, string = _samples(Window(rows, tags, ws, we, TENANT), width, ODD_OFFSET)
    exp_numeric, exp_string = ref.samples(ws, we, width, ODD_OFFSET)
    assert_rows_equal(numeric, exp_numeric, "numeric samples, partial buckets")
    assert_rows_equal(string, exp_string, "string samples, partial buckets")


# ---------------------------------------------------------------- roll-up


@settings(SETTINGS, max_examples=60)
@given(histories(), st.sampled_from(DAYS))
def test_rollup_equals_direct_computation(history, d0):
    rows, tags = history
    w = Window(rows, tags, d0, d0 + DAY, TENANT)
    fine_n = w.samples(MINUTE)
    mid_n = w.samples(HOUR)
    day_n = w.samples(DAY)
    pairs = [
        (fine_n.numeric, HOUR, mid_n.numeric, S.SAMPLES, "1m → 1h numeric"),
        (fine_n.string, HOUR, mid_n.string, S.SAMPLES_STR, "1m → 1h string"),
        (mid_n.numeric, DAY, day_n.numeric, S.SAMPLES, "1h → 1d numeric"),
        (mid_n.string, DAY, day_n.string, S.SAMPLES_STR, "1h → 1d string"),
        (fine_n.numeric, DAY, day_n.numeric, S.SAMPLES, "1m → 1d numeric"),
    ]
    for fine, to_width, direct, schema, what in pairs:
        rolled = plain_rows(call_rollup(fine, to_width), schema)
        assert_rows_equal(rolled, plain_rows(direct, schema), what)


@settings(SETTINGS, max_examples=60)
@given(histories(), st.sampled_from(DAYS))
def test_rollup_of_reference_samples_equals_reference_coarse_samples(history, d0):
    """Roll-up alone: feed it the reference's fine samples, expect the reference's
    coarse samples (so a roll-up mistake is not masked by a sampling mistake)."""
    rows, tags = history
    ref = Reference(rows, tags, TENANT)
    fine = ref.samples(d0, d0 + DAY, MINUTE)
    hourly = ref.samples(d0, d0 + DAY, HOUR)
    daily = ref.samples(d0, d0 + DAY, DAY)
    for i, schema in enumerate((S.SAMPLES, S.SAMPLES_STR)):
        kind = "numeric" if i == 0 else "string"
        rolled = call_rollup(_with_datetimes(fine[i], schema), HOUR)
        assert_rows_equal(plain_rows(rolled, schema), hourly[i], f"{kind} 1m → 1h")
        rolled = call_rollup(_with_datetimes(hourly[i], schema), DAY)
        assert_rows_equal(plain_rows(rolled, schema), daily[i], f"{kind} 1h → 1d")


@settings(SETTINGS, max_examples=40)
@given(histories(), st.integers(-20, 60), st.integers(1, 30))
def test_rollup_with_offset_equals_direct_computation(history, first_bucket, n_coarse):
    """7m+3m samples rolled up to 21m+3m equal direct 21m+3m samples."""
    rows, tags = history
    coarse = 3 * ODD_WIDTH
    base = MIDNIGHTS[1] - ((MIDNIGHTS[1] - ODD_OFFSET) % coarse)
    ws = base + first_bucket * coarse
    we = ws + n_coarse * coarse
    ref = Reference(rows, tags, TENANT)
    w = Window(rows, tags, ws, we, TENANT)
    fine = w.samples(ODD_WIDTH, ODD_OFFSET)
    exp_numeric, exp_string = ref.samples(ws, we, coarse, ODD_OFFSET)
    rolled = call_rollup(fine.numeric, coarse, ODD_OFFSET)
    assert_rows_equal(plain_rows(rolled, S.SAMPLES), exp_numeric, "numeric 7m → 21m")
    rolled = call_rollup(fine.string, coarse, ODD_OFFSET)
    assert_rows_equal(plain_rows(rolled, S.SAMPLES_STR), exp_string, "string 7m → 21m")


# ---------------------------------------------------------------- the test tooling itself


@settings(SETTINGS, max_examples=150)
@given(histories())
def test_builder_raw_carry_in_agrees_with_reference_carry_in(history):
    """The builder's walk-back run_begin_at (what the source query computes) and the
    reference's runs agree on every tag alive at midnight."""
    from tests.transforms.builders import raw_carry_in_rows, to_us

    rows, tags = history
    ref = Reference(rows, tags, TENANT)
    deaths = {t.tag_id: t.death_at_us for t in tags}
    for d0 in MIDNIGHTS:
        expected = {c["tag_id"]: c for c in ref.carry_in(d0)}
        raw = {r["tag_id"]: r for r in raw_carry_in_rows(rows, tags, d0)}
        for tag_id, c in expected.items():
            r = raw[tag_id]
            assert to_us(r["time"]) == c["time"]
            assert to_us(r["run_begin_at"]) == c["run_begin_at"]
            assert r["is_string"] == (c["value_kind"] == "string")
        for tag_id in raw.keys() - expected.keys():
            death = deaths.get(tag_id)
            t = to_us(raw[tag_id]["time"])
            assert tag_id not in deaths or (death is not None and t <= death <= d0)
