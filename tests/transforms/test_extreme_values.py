"""Time-weighted averages of any finite values, from subnormals to ±1.7976931348623157e308:
the samples transform and the roll-up against an exact rational reference (fractions), and
hand-worked days where a plain float sum of value·duration overflows or cancels."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tagflow.schemas import arrow as S
from tagflow.transforms.day import compute_day
from tagflow.transforms.weighted_mean import weighted_means
from tests.transforms.builders import (
    DAY,
    HOUR,
    MINUTE,
    Window,
    call_rollup,
    plain_rows,
    to_dt,
    us,
)
from tests.transforms.reference import Reference, Tag, is_finite_number

TENANT = "acme"
MAX = 1.7976931348623157e308
SMALLEST = 5e-324  # 2^-1074, the smallest subnormal
D0 = us("2026-03-02")
WINDOW = (D0, D0 + DAY)
SETTINGS = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

finite = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([MAX, -MAX, 1e308, -1e308, SMALLEST, -SMALLEST, 2.2250738585072014e-308]),
    st.floats(-1e-300, 1e-300, allow_subnormal=True),  # subnormals and tiny normals
    st.integers(-1000, 1000).map(lambda k: 1e15 + k * 0.125),  # a large offset, small steps
)


def close_to_exact(actual: float, exact: Fraction) -> bool:
    """Within 1e-9 of the exact mean, relative; or, where the exact mean is itself tiny, a few
    steps of the smallest subnormal away: a float cannot be closer than correct rounding,
    which is half a step there."""
    return abs(Fraction(actual) - exact) <= Fraction(1, 10**9) * abs(exact) + 4 * Fraction(SMALLEST)


def means_of(values: list[float], weights: list[int], starts: list[int]) -> np.ndarray:
    """weighted_means with the per-segment total, min and max its callers have."""
    ends = [*starts[1:], len(values)]
    spans = [range(a, b) for a, b in zip(starts, ends, strict=True)]
    total = [sum(weights[i] for i in span) for span in spans]
    used = [[values[i] for i in span if weights[i] > 0] for span in spans]
    return weighted_means(
        np.array(values, dtype=np.float64),
        np.array(weights, dtype=np.int64),
        np.array(starts, dtype=np.int64),
        np.array(total, dtype=np.int64),
        np.array([min(u, default=math.inf) for u in used]),
        np.array([max(u, default=-math.inf) for u in used]),
    )


def exact_mean(pairs: list[tuple[float, int]]) -> Fraction:
    return sum(Fraction(v) * w for v, w in pairs) / sum(w for _, w in pairs)


@SETTINGS
@given(st.lists(st.lists(st.tuples(finite, st.integers(0, DAY)), min_size=1), min_size=1))
def test_weighted_means_equal_the_exact_rational_mean(segments):
    values = [v for segment in segments for v, _ in segment]
    weights = [w for segment in segments for _, w in segment]
    starts = np.cumsum([0] + [len(segment) for segment in segments[:-1]]).tolist()
    means = means_of(values, weights, starts)
    for segment, mean in zip(segments, means.tolist(), strict=True):
        weighted = [(v, w) for v, w in segment if w > 0]
        if not weighted:
            assert math.isnan(mean)
        else:
            assert close_to_exact(mean, exact_mean(weighted)), (mean, segment)


@st.composite
def extreme_histories(draw):
    """(rows, tags): one or two numeric tags over a day and a bit, extreme finite values (and
    an occasional NaN gap) at random microseconds."""
    tags = [Tag(1, "a"), Tag(2, "b")][: draw(st.integers(1, 2))]
    rows = []
    for tag in tags:
        times = draw(st.lists(st.integers(D0 - HOUR, D0 + DAY + HOUR), min_size=1, max_size=12))
        for time in times:
            value = draw(st.one_of(finite, finite, finite, st.just(math.nan)))
            rows.append((tag.tag_id, time, value, False))
    return rows, tags


def check_numeric_samples(window: Window, reference: Reference, width: int, offset: int = 0):
    numeric = plain_rows(window.samples(width, offset).numeric, S.SAMPLES)
    expected, _ = reference.samples(window.start, window.end, width, offset)
    assert [(r["tag_id"], r["bucket_start"]) for r in numeric] == [
        (r["tag_id"], r["bucket_start"]) for r in expected
    ]
    for got, want in zip(numeric, expected, strict=True):
        for column in ("covered_s", "min", "max", "first", "last", "count"):
            assert got[column] == want[column], (column, got, want)
        if want["twa"] is None:
            assert got["twa"] is None
        else:
            assert close_to_exact(got["twa"], exact_twa(reference, got, width, offset)), got


def exact_twa(reference: Reference, row: dict, width: int, offset: int) -> Fraction:
    """The reference's twa is already rounded to a float; recompute the exact fraction from
    its pieces so that the comparison is against the rational mean itself."""
    lo = max(row["bucket_start"], WINDOW[0])
    hi = min(row["bucket_start"] + width, WINDOW[1])
    pairs = []
    for piece in reference._pieces[row["tag_id"]]:
        end = hi if piece.end_us is None else piece.end_us
        held = min(end, hi) - max(piece.start_us, lo)
        if held > 0 and is_finite_number(piece.kind, piece.value):
            pairs.append((piece.value, held))
    return exact_mean(pairs)


@settings(SETTINGS, max_examples=150)
@given(extreme_histories(), st.sampled_from([MINUTE, HOUR, DAY, 7 * MINUTE + 3]))
def test_samples_of_extreme_values_equal_the_exact_mean(history, width):
    rows, tags = history
    window = Window(rows, tags, *WINDOW, TENANT)
    check_numeric_samples(window, Reference(rows, tags, TENANT), width)


def samples_table(rows: list[dict]) -> pa.Table:
    columns = {name: [row[name] for row in rows] for name in S.SAMPLES.names}
    columns["bucket_start"] = [to_dt(t) for t in columns["bucket_start"]]
    return pa.table(columns, schema=S.SAMPLES)


@st.composite
def fine_samples(draw):
    """Rows of one tag's 1-minute samples over an hour: random finite twas and covered times,
    some buckets uncovered; min/max/first/last bracket the twa as a real table's do."""
    rows = []
    for minute in sorted(draw(st.sets(st.integers(0, 59), min_size=1))):
        covered_us = draw(st.sampled_from([0, 1, 999_999, 30_000_000, MINUTE]))
        twa = draw(finite) if covered_us else None
        rows.append(
            {
                "tag_id": 1,
                "tag_name": "a",
                "bucket_start": D0 + minute * MINUTE,
                "twa": twa,
                "covered_s": covered_us / 1e6,
                "min": twa,
                "max": twa,
                "first": twa,
                "last": twa,
                "count": 1,
            }
        )
    return rows


@settings(SETTINGS, max_examples=300)
@given(fine_samples())
def test_rollup_of_extreme_twas_is_their_exact_weighted_mean(rows):
    (hour,) = plain_rows(call_rollup(samples_table(rows), HOUR), S.SAMPLES)
    covered = [(r["twa"], round(r["covered_s"] * 1e6)) for r in rows if r["covered_s"] > 0]
    if not covered:
        assert hour["twa"] is None and hour["covered_s"] == 0
        return
    assert close_to_exact(hour["twa"], exact_mean(covered))
    assert hour["min"] == min(v for v, _ in covered)
    assert hour["max"] == max(v for v, _ in covered)
    assert (hour["first"], hour["last"]) == (covered[0][0], covered[-1][0])


# ---------------------------------------------------------------- hand-worked days


def day_tables(rows: list[tuple], tags: list[Tag]) -> dict[str, pa.Table]:
    """The day's whole chain (1m samples, rolled up to 1h and 1d), as the assets run it."""
    window = Window(rows, tags, *WINDOW, TENANT)
    result = compute_day(
        window.raw_rows, window.raw_carry_in, window.tags_tbl, to_dt(D0), to_dt(D0 + DAY), TENANT
    )
    return {
        name: plain_rows(table, S.SAMPLES)
        for name, table in result.tables.items()
        if name.startswith("samples_1")
    }


def test_values_alternating_at_plus_and_minus_1e308_hourly_average_to_zero():
    # +1e308 from 00:00, -1e308 from 01:00, ... : twelve hours of each, so the day's integral
    # is exactly 0 and so is its mean. A plain float sum overflows to inf - inf = NaN.
    rows = [(1, D0 + h * HOUR, 1e308 if h % 2 == 0 else -1e308, False) for h in range(24)]
    tables = day_tables(rows, [Tag(1, "alternating")])
    (day,) = tables["samples_1d"]
    assert (day["twa"], day["covered_s"], day["min"], day["max"]) == (0.0, 86400.0, -1e308, 1e308)
    assert (day["first"], day["last"], day["count"]) == (1e308, -1e308, 24)
    hours = tables["samples_1h"]
    assert [r["twa"] for r in hours] == [1e308 if h % 2 == 0 else -1e308 for h in range(24)]
    assert {r["twa"] for r in tables["samples_1m"]} == {1e308, -1e308}


def test_one_hour_at_1e308_in_a_day_of_zeros_averages_to_a_24th_of_it():
    # 0 all day but 05:00-06:00 at 1e308: the mean is 1e308 · 3600 s / 86400 s = 1e308 / 24
    # ≈ 4.1666e306, a single correctly rounded division. The old sum overflowed to inf and
    # the clip into [min, max] published 1e308.
    rows = [(1, D0, 0.0, False), (1, D0 + 5 * HOUR, 1e308, False), (1, D0 + 6 * HOUR, 0.0, False)]
    tables = day_tables(rows, [Tag(1, "spike")])
    (day,) = tables["samples_1d"]
    assert day["twa"] == 1e308 / 24 == float(Fraction(1e308) / 24)
    assert 4.1666e306 < day["twa"] < 4.1667e306
    assert (day["min"], day["max"], day["covered_s"]) == (0.0, 1e308, 86400.0)
    assert tables["samples_1h"][5]["twa"] == 1e308


def test_largest_values_cancelling_inside_a_minute_leave_the_small_one():
    # In 00:00-00:01: +MAX for 20 s, -MAX for 20 s, 3.0 for 20 s: the mean is exactly 1.0.
    # In 00:01-00:02: +MAX for 10 s, -MAX for 10 s, 1e-300 for 40 s: the mean is
    # 1e-300 · 40 / 60, which no float sum of the three products can give.
    second = 1_000_000
    rows = [
        (1, D0, MAX, False),
        (1, D0 + 20 * second, -MAX, False),
        (1, D0 + 40 * second, 3.0, False),
        (1, D0 + MINUTE, MAX, False),
        (1, D0 + MINUTE + 10 * second, -MAX, False),
        (1, D0 + MINUTE + 20 * second, 1e-300, False),
        (1, D0 + 2 * MINUTE, math.nan, False),
    ]
    minutes = day_tables(rows, [Tag(1, "cancelling")])["samples_1m"]
    assert minutes[0]["twa"] == 1.0
    assert minutes[1]["twa"] == float(Fraction(1e-300) * 2 / 3)
    assert (minutes[0]["min"], minutes[0]["max"]) == (-MAX, MAX)
    assert (minutes[1]["first"], minutes[1]["last"]) == (MAX, 1e-300)


def test_averages_cancelling_across_minutes_keep_the_hour_exact():
    # 00:00-00:01: +1e308 for 30 s, then 1.0; 00:01-00:02: -1e308 for 30 s, then 1.0; a gap
    # after. The minutes round to +5e307 and -5e307 (the 0.5 each is far below their last
    # place), so their roll-up is 0; the step function's mean over the 120 covered seconds is
    # 1.0 · 60 s / 120 s = 0.5, which the hour and the day must give.
    second = 1_000_000
    rows = [
        (1, D0, 1e308, False),
        (1, D0 + 30 * second, 1.0, False),
        (1, D0 + MINUTE, -1e308, False),
        (1, D0 + MINUTE + 30 * second, 1.0, False),
        (1, D0 + 2 * MINUTE, math.nan, False),
        (2, D0, 7.0, False),  # a plain tag beside it keeps its roll-up
    ]
    tables = day_tables(rows, [Tag(1, "cancelling"), Tag(2, "plain")])
    assert [r["twa"] for r in tables["samples_1m"][:2]] == [1e308 / 2, -1e308 / 2]
    for width in ("samples_1h", "samples_1d"):
        cancelling, plain = tables[width][0], tables[width][-1]
        assert (cancelling["twa"], cancelling["covered_s"]) == (0.5, 120.0)
        assert (cancelling["min"], cancelling["max"], cancelling["count"]) == (-1e308, 1e308, 5)
        assert (plain["tag_name"], plain["twa"]) == ("plain", 7.0)


@settings(SETTINGS, max_examples=100)
@given(extreme_histories())
def test_materialised_widths_of_extreme_values_equal_the_exact_mean(history):
    rows, tags = history
    reference = Reference(rows, tags, TENANT)
    tables = day_tables(rows, tags)
    for name, width in (("samples_1m", MINUTE), ("samples_1h", HOUR), ("samples_1d", DAY)):
        expected, _ = reference.samples(*WINDOW, width, 0)
        assert len(tables[name]) == len(expected)
        for got, want in zip(tables[name], expected, strict=True):
            assert (got["covered_s"], got["min"], got["max"]) == (
                want["covered_s"],
                want["min"],
                want["max"],
            )
            if want["twa"] is not None:
                exact = exact_twa(reference, got, width, 0)
                assert close_to_exact(got["twa"], exact), (name, got)


def test_subnormal_values_keep_their_mean_and_extremes():
    # 2 steps of the smallest subnormal for 45 min, 6 steps for 15 min: mean 3 steps exactly.
    rows = [(1, D0, 2 * SMALLEST, False), (1, D0 + 45 * MINUTE, 6 * SMALLEST, False)]
    (hour, *_) = day_tables(rows, [Tag(1, "tiny")])["samples_1h"]
    assert (hour["twa"], hour["min"], hour["max"]) == (3 * SMALLEST, 2 * SMALLEST, 6 * SMALLEST)


def test_ordinary_values_give_the_bits_of_the_plain_float_sum():
    # Scaling by a power of two is exact, so ordinary values keep the result they always had.
    rng = np.random.default_rng(5)
    values = rng.normal(20.0, 5.0, 10_000)
    weights = rng.integers(1, 60_000_000, 10_000)
    starts = np.arange(0, 10_000, 7)
    plain = np.add.reduceat(values * weights, starts) / np.add.reduceat(weights, starts)
    means = means_of(values.tolist(), weights.tolist(), starts.tolist())
    assert np.array_equal(means, plain)
    # The same values scaled to the top of the range take the scaled path, with the same bits.
    huge = means_of((values * 2.0**1000).tolist(), weights.tolist(), starts.tolist())
    assert np.array_equal(huge, plain * 2.0**1000)


def test_all_rows_of_weight_zero_give_nan_for_the_caller_to_mask():
    means = means_of([MAX, math.nan, 1.0], [0, 0, 5], [0, 2])
    assert math.isnan(means[0]) and means[1] == 1.0
