"""Hand-worked examples of DESIGN §2 / SPEC.md. Every expected value below is written
out by hand from the spec; each example runs against the implementation and against
the brute-force reference (which checks the reference too)."""

from __future__ import annotations

import math

import pytest

from tagflow.schemas import arrow as S
from tests.transforms.builders import (
    DAY,
    HOUR,
    MINUTE,
    Window,
    assert_rows_equal,
    call_rollup,
    plain_rows,
    us,
)
from tests.transforms.reference import Reference, Tag, span_id, splitmix64

TENANT = "acme"
NAN = math.nan
INF = math.inf
SEC = 1_000_000


def t(text: str) -> int:
    """'03-02 01:15' → µs of 2026-03-02 01:15 UTC."""
    return us("2026-" + text)


D1 = t("03-02 00:00")  # the day most examples look at
D2 = t("03-03 00:00")


# ---------------------------------------------------------------- engines


class ReferenceEngine:
    def __init__(self, rows, tags):
        self.ref = Reference(rows, tags, TENANT)

    def transitions(self, lo, hi):
        return self.ref.transitions(lo, hi)

    def carry_in(self, at):
        return self.ref.carry_in(at)

    def spans(self, d0, d1):
        return self.ref.spans(d0, d1)

    def samples(self, ws, we, width, offset=0):
        return self.ref.samples(ws, we, width, offset)


class ImplementationEngine:
    def __init__(self, rows, tags):
        self.rows, self.tags = rows, tags

    def transitions(self, lo, hi):
        w = Window(self.rows, self.tags, lo, hi, TENANT)
        keys = ("rows_in", "duplicates_dropped", "orphans_skipped")
        return plain_rows(w.transitions, S.TRANSITIONS), {k: int(w.stats[k]) for k in keys}

    def carry_in(self, at):
        w = Window(self.rows, self.tags, at, at + DAY, TENANT)
        return plain_rows(w.carry_in, S.CARRY_IN)

    def spans(self, d0, d1):
        return plain_rows(Window(self.rows, self.tags, d0, d1, TENANT).spans(), S.SPANS)

    def samples(self, ws, we, width, offset=0):
        result = Window(self.rows, self.tags, ws, we, TENANT).samples(width, offset)
        return plain_rows(result.numeric, S.SAMPLES), plain_rows(result.string, S.SAMPLES_STR)


@pytest.fixture(params=["implementation", "reference"])
def engine(request):
    return ImplementationEngine if request.param == "implementation" else ReferenceEngine


# ---------------------------------------------------------------- expected-row helpers


def span(tag: Tag, value, raw_begin, raw_end, begin, end) -> dict:
    return {
        "id": span_id(TENANT, tag.tag_id, raw_begin),
        "tag_id": tag.tag_id,
        "tag_name": tag.name,
        "value_double": value if isinstance(value, float) else None,
        "value_string": value if isinstance(value, str) else None,
        "raw_begin_at": raw_begin,
        "raw_end_at": raw_end,
        "begin_at": begin,
        "end_at": end,
    }


def num(tag: Tag, bucket, twa, covered_s, mn, mx, first, last, count) -> dict:
    return {
        "tag_id": tag.tag_id,
        "tag_name": tag.name,
        "bucket_start": bucket,
        "twa": twa,
        "covered_s": float(covered_s),
        "min": mn,
        "max": mx,
        "first": first,
        "last": last,
        "count": count,
    }


def gap(tag: Tag, bucket, count) -> dict:
    """A numeric bucket where the tag is defined but nothing is covered."""
    return num(tag, bucket, None, 0, None, None, None, None, count)


def strs(tag: Tag, bucket, covered_s, first, last, mode, count, held) -> dict:
    return {
        "tag_id": tag.tag_id,
        "tag_name": tag.name,
        "bucket_start": bucket,
        "covered_s": float(covered_s),
        "first": first,
        "last": last,
        "mode": mode,
        "count": count,
        "held_s": [(k, float(v)) for k, v in held],
    }


def trans(tag: Tag, time, value, kind) -> dict:
    return {
        "tag_id": tag.tag_id,
        "tag_name": tag.name,
        "time": time,
        "value_double": value if kind == "numeric" else None,
        "value_string": value if kind == "string" else None,
        "value_kind": kind,
    }


def hours(day_start: int, first_hour: int, last_hour: int):
    return [day_start + h * HOUR for h in range(first_hour, last_hour + 1)]


# ---------------------------------------------------------------- DESIGN worked example

T = Tag(1, "T", death_at_us=t("03-02 02:30"))
DESIGN_ROWS = [
    (1, t("03-01 22:00"), 10.0, False),
    (1, t("03-02 00:30"), 20.0, False),
    (1, t("03-02 01:00"), 20.0, False),
    (1, t("03-02 01:15"), NAN, False),
    (1, t("03-02 01:45"), 30.0, False),
]


def test_reference_reproduces_design_worked_example():
    ref = Reference(DESIGN_ROWS, [T], TENANT)
    numeric, string = ref.samples(D1, D2, HOUR)
    assert string == []
    assert_rows_equal(
        numeric,
        [
            num(T, t("03-02 00:00"), 15.0, 3600, 10.0, 20.0, 10.0, 20.0, 1),
            num(T, t("03-02 01:00"), 25.0, 1800, 20.0, 30.0, 20.0, 30.0, 3),
            num(T, t("03-02 02:00"), 30.0, 1800, 30.0, 30.0, 30.0, 30.0, 0),
        ],
    )
    assert [(s["raw_begin_at"], s["raw_end_at"]) for s in ref.spans(D1, D2)] == [
        (t("03-01 22:00"), t("03-02 00:30")),
        (t("03-02 00:30"), t("03-02 01:15")),
        (t("03-02 01:15"), t("03-02 01:45")),
        (t("03-02 01:45"), t("03-02 02:30")),
    ]


def test_splitmix64_matches_published_first_output_for_seed_zero():
    # splitmix64 seeded with 0 yields 0xE220A8397B1DCDAF first (Vigna's reference code)
    assert splitmix64(0) == 0xE220A8397B1DCDAF


def test_design_example_spans(engine):
    got = engine(DESIGN_ROWS, [T]).spans(D1, D2)
    assert_rows_equal(
        got,
        [
            span(T, 10.0, t("03-01 22:00"), t("03-02 00:30"), D1, t("03-02 00:30")),
            span(T, 20.0, t("03-02 00:30"), t("03-02 01:15"), t("03-02 00:30"), t("03-02 01:15")),
            span(T, NAN, t("03-02 01:15"), t("03-02 01:45"), t("03-02 01:15"), t("03-02 01:45")),
            span(T, 30.0, t("03-02 01:45"), t("03-02 02:30"), t("03-02 01:45"), t("03-02 02:30")),
        ],
    )


def test_design_example_hourly_samples(engine):
    numeric, string = engine(DESIGN_ROWS, [T]).samples(D1, D2, HOUR)
    assert string == []
    assert_rows_equal(
        numeric,
        [
            num(T, t("03-02 00:00"), 15.0, 3600, 10.0, 20.0, 10.0, 20.0, 1),
            num(T, t("03-02 01:00"), 25.0, 1800, 20.0, 30.0, 20.0, 30.0, 3),
            num(T, t("03-02 02:00"), 30.0, 1800, 30.0, 30.0, 30.0, 30.0, 0),
        ],
    )


def test_design_example_daily_sample(engine):
    # covered: 10 for 1800 s, 20 for 2700 s, (NaN gap 1800 s), 30 for 2700 s
    numeric, _ = engine(DESIGN_ROWS, [T]).samples(D1, D2, DAY)
    assert_rows_equal(numeric, [num(T, D1, 153000 / 7200, 7200, 10.0, 30.0, 10.0, 30.0, 4)])


def test_design_example_minute_samples_stop_at_death(engine):
    numeric, _ = engine(DESIGN_ROWS, [T]).samples(D1, D2, MINUTE)
    by_bucket = {r["bucket_start"]: r for r in numeric}
    assert len(numeric) == 150  # 00:00 .. 02:29
    assert min(by_bucket) == t("03-02 00:00") and max(by_bucket) == t("03-02 02:29")
    assert_rows_equal(
        [
            by_bucket[b]
            for b in (
                t("03-02 00:29"),
                t("03-02 00:30"),
                t("03-02 01:15"),
                t("03-02 01:16"),
                t("03-02 01:45"),
                t("03-02 02:29"),
            )
        ],
        [
            num(T, t("03-02 00:29"), 10.0, 60, 10.0, 10.0, 10.0, 10.0, 0),
            num(T, t("03-02 00:30"), 20.0, 60, 20.0, 20.0, 20.0, 20.0, 1),
            gap(T, t("03-02 01:15"), 1),
            gap(T, t("03-02 01:16"), 0),
            num(T, t("03-02 01:45"), 30.0, 60, 30.0, 30.0, 30.0, 30.0, 1),
            num(T, t("03-02 02:29"), 30.0, 60, 30.0, 30.0, 30.0, 30.0, 0),
        ],
    )


def test_design_example_transitions_and_carry_in(engine):
    e = engine(DESIGN_ROWS, [T])
    got, stats = e.transitions(D1, D2)
    assert_rows_equal(
        got,
        [
            trans(T, t("03-02 00:30"), 20.0, "numeric"),
            trans(T, t("03-02 01:00"), 20.0, "numeric"),
            trans(T, t("03-02 01:15"), NAN, "numeric"),
            trans(T, t("03-02 01:45"), 30.0, "numeric"),
        ],
    )
    assert stats == {"rows_in": 4, "duplicates_dropped": 0, "orphans_skipped": 0}
    assert_rows_equal(
        e.carry_in(D1),
        [{**trans(T, t("03-01 22:00"), 10.0, "numeric"), "run_begin_at": t("03-01 22:00")}],
    )


def test_odd_width_buckets_align_to_epoch_plus_offset(engine):
    # 7-minute buckets offset by 3 minutes: 2026-03-02 00:00 is 3 minutes past a bucket
    # start (29540160 min since epoch; (29540160 - 3) % 7 == 3), so buckets start at
    # 00:04, 00:11, 00:18, 00:25, ...; window [00:25, 01:49) = 12 buckets.
    numeric, _ = engine(DESIGN_ROWS, [T]).samples(
        t("03-02 00:25"), t("03-02 01:49"), 7 * MINUTE, 3 * MINUTE
    )
    assert_rows_equal(
        numeric,
        [
            num(T, t("03-02 00:25"), 5400 / 420, 420, 10.0, 20.0, 10.0, 20.0, 1),
            num(T, t("03-02 00:32"), 20.0, 420, 20.0, 20.0, 20.0, 20.0, 0),
            num(T, t("03-02 00:39"), 20.0, 420, 20.0, 20.0, 20.0, 20.0, 0),
            num(T, t("03-02 00:46"), 20.0, 420, 20.0, 20.0, 20.0, 20.0, 0),
            num(T, t("03-02 00:53"), 20.0, 420, 20.0, 20.0, 20.0, 20.0, 0),
            num(T, t("03-02 01:00"), 20.0, 420, 20.0, 20.0, 20.0, 20.0, 1),
            num(T, t("03-02 01:07"), 20.0, 420, 20.0, 20.0, 20.0, 20.0, 0),
            num(T, t("03-02 01:14"), 20.0, 60, 20.0, 20.0, 20.0, 20.0, 1),
            gap(T, t("03-02 01:21"), 0),
            gap(T, t("03-02 01:28"), 0),
            gap(T, t("03-02 01:35"), 0),
            num(T, t("03-02 01:42"), 30.0, 240, 30.0, 30.0, 30.0, 30.0, 1),
        ],
    )


def test_window_cutting_buckets_considers_only_the_part_inside(engine):
    # window [00:20, 01:20) with hourly buckets: bucket 00:00 sees [00:20, 01:00)
    # (10 for 600 s, 20 for 1800 s), bucket 01:00 sees [01:00, 01:20) (20 for 900 s,
    # then NaN); bucket_start stays the aligned bucket start
    numeric, _ = engine(DESIGN_ROWS, [T]).samples(t("03-02 00:20"), t("03-02 01:20"), HOUR)
    assert_rows_equal(
        numeric,
        [
            num(T, t("03-02 00:00"), 42000 / 2400, 2400, 10.0, 20.0, 10.0, 20.0, 1),
            num(T, t("03-02 01:00"), 20.0, 900, 20.0, 20.0, 20.0, 20.0, 2),
        ],
    )


# ---------------------------------------------------------------- held across midnight

A = Tag(2, "A")
A_ROWS = [(2, t("03-01 20:00"), 5.0, False), (2, t("03-02 03:00"), 7.0, False)]


def test_value_held_across_midnight_and_empty_buckets(engine):
    numeric, _ = engine(A_ROWS, [A]).samples(D1, D2, HOUR)
    expected = [num(A, b, 5.0, 3600, 5.0, 5.0, 5.0, 5.0, 0) for b in hours(D1, 0, 2)]
    expected.append(num(A, t("03-02 03:00"), 7.0, 3600, 7.0, 7.0, 7.0, 7.0, 1))
    expected += [num(A, b, 7.0, 3600, 7.0, 7.0, 7.0, 7.0, 0) for b in hours(D1, 4, 23)]
    assert_rows_equal(numeric, expected)


def test_day_without_rows_carries_the_value_through(engine):
    e = engine(A_ROWS, [A])
    numeric, _ = e.samples(D2, D2 + DAY, DAY)
    assert_rows_equal(numeric, [num(A, D2, 7.0, 86400, 7.0, 7.0, 7.0, 7.0, 0)])
    assert_rows_equal(e.spans(D2, D2 + DAY), [span(A, 7.0, t("03-02 03:00"), None, D2, D2 + DAY)])


def test_span_crossing_midnight_keeps_raw_begin_and_id(engine):
    e = engine(A_ROWS, [A])
    day1 = e.spans(D1, D2)
    day2 = e.spans(D2, D2 + DAY)
    assert_rows_equal(
        day1,
        [
            span(A, 5.0, t("03-01 20:00"), t("03-02 03:00"), D1, t("03-02 03:00")),
            span(A, 7.0, t("03-02 03:00"), None, t("03-02 03:00"), D2),
        ],
    )
    assert_rows_equal(day2, [span(A, 7.0, t("03-02 03:00"), None, D2, D2 + DAY)])
    assert day1[1]["id"] == day2[0]["id"]
    assert day1[1]["raw_begin_at"] == day2[0]["raw_begin_at"]
    # and the run of 5.0 seen from 03-01: same id as on 03-02, end not known on 03-01
    day0 = e.spans(t("03-01 00:00"), D1)
    assert_rows_equal(day0, [span(A, 5.0, t("03-01 20:00"), None, t("03-01 20:00"), D1)])
    assert day0[0]["id"] == day1[0]["id"]


# ---------------------------------------------------------------- changes on boundaries

B = Tag(3, "B")
B_ROWS = [
    (3, t("03-01 23:00"), 1.0, False),
    (3, t("03-02 00:00"), 2.0, False),  # exactly at midnight
    (3, t("03-02 01:00"), 4.0, False),  # exactly at a bucket boundary
    (3, t("03-03 00:00"), 8.0, False),  # exactly at the next midnight
]


def test_change_exactly_at_midnight_and_bucket_boundary(engine):
    e = engine(B_ROWS, [B])
    assert_rows_equal(
        e.spans(D1, D2),
        [
            span(B, 2.0, D1, t("03-02 01:00"), D1, t("03-02 01:00")),
            span(B, 4.0, t("03-02 01:00"), None, t("03-02 01:00"), D2),  # ends at d1: null
        ],
    )
    numeric, _ = e.samples(D1, D2, HOUR)
    expected = [
        num(B, t("03-02 00:00"), 2.0, 3600, 2.0, 2.0, 2.0, 2.0, 1),
        num(B, t("03-02 01:00"), 4.0, 3600, 4.0, 4.0, 4.0, 4.0, 1),
    ]
    expected += [num(B, b, 4.0, 3600, 4.0, 4.0, 4.0, 4.0, 0) for b in hours(D1, 2, 23)]
    assert_rows_equal(numeric, expected)


def test_run_ending_exactly_at_day_end_has_null_raw_end(engine):
    e = engine(B_ROWS, [B])
    d0 = t("03-01 00:00")
    assert_rows_equal(e.spans(d0, D1), [span(B, 1.0, t("03-01 23:00"), None, t("03-01 23:00"), D1)])
    numeric, _ = e.samples(d0, D1, HOUR)
    assert_rows_equal(numeric, [num(B, t("03-01 23:00"), 1.0, 3600, 1.0, 1.0, 1.0, 1.0, 1)])


def test_carry_in_replaced_at_midnight_holds_for_zero_time(engine):
    e = engine(B_ROWS, [B])
    assert_rows_equal(
        e.carry_in(D2),
        [{**trans(B, t("03-02 01:00"), 4.0, "numeric"), "run_begin_at": t("03-02 01:00")}],
    )
    assert_rows_equal(e.spans(D2, D2 + DAY), [span(B, 8.0, D2, None, D2, D2 + DAY)])
    numeric, _ = e.samples(D2, D2 + DAY, HOUR)
    assert_rows_equal(
        numeric[:2],
        [
            num(B, D2, 8.0, 3600, 8.0, 8.0, 8.0, 8.0, 1),
            num(B, D2 + HOUR, 8.0, 3600, 8.0, 8.0, 8.0, 8.0, 0),
        ],
    )
    assert len(numeric) == 24


# ---------------------------------------------------------------- death and birth mid-bucket

DIES = Tag(4, "D", death_at_us=t("03-02 01:20"))
BORN = Tag(5, "E")
DIES_BORN_ROWS = [
    (4, t("03-02 00:10"), 3.0, False),
    (5, t("03-02 05:40"), 6.0, False),
    (5, t("03-02 05:50"), 9.0, False),
]


def test_tag_dying_mid_bucket_stops_covering(engine):
    e = engine(DIES_BORN_ROWS, [DIES, BORN])
    numeric, _ = e.samples(D1, D2, HOUR)
    d_rows = [r for r in numeric if r["tag_id"] == 4]
    assert_rows_equal(
        d_rows,
        [
            num(DIES, t("03-02 00:00"), 3.0, 3000, 3.0, 3.0, 3.0, 3.0, 1),
            num(DIES, t("03-02 01:00"), 3.0, 1200, 3.0, 3.0, 3.0, 3.0, 0),
        ],
    )
    spans = [s for s in e.spans(D1, D2) if s["tag_id"] == 4]
    assert_rows_equal(
        spans,
        [span(DIES, 3.0, t("03-02 00:10"), t("03-02 01:20"), t("03-02 00:10"), t("03-02 01:20"))],
    )


def test_tag_born_mid_bucket_has_no_earlier_buckets(engine):
    e = engine(DIES_BORN_ROWS, [DIES, BORN])
    numeric, _ = e.samples(D1, D2, HOUR)
    e_rows = [r for r in numeric if r["tag_id"] == 5]
    expected = [num(BORN, t("03-02 05:00"), 7.5, 1200, 6.0, 9.0, 6.0, 9.0, 2)]
    expected += [num(BORN, b, 9.0, 3600, 9.0, 9.0, 9.0, 9.0, 0) for b in hours(D1, 6, 23)]
    assert_rows_equal(e_rows, expected)
    minute, _ = e.samples(D1, D2, MINUTE)
    e_min = [r for r in minute if r["tag_id"] == 5]
    assert e_min[0]["bucket_start"] == t("03-02 05:40")
    assert_rows_equal(e_min[:1], [num(BORN, t("03-02 05:40"), 6.0, 60, 6.0, 6.0, 6.0, 6.0, 1)])
    assert len(e_min) == 24 * 60 - (5 * 60 + 40)


def test_samples_sorted_by_tag_name_then_bucket(engine):
    numeric, _ = engine(DIES_BORN_ROWS, [DIES, BORN]).samples(D1, D2, HOUR)
    keys = [(r["tag_name"], r["bucket_start"]) for r in numeric]
    assert keys == sorted(keys) and keys[0] == ("D", D1) and keys[2] == ("E", t("03-02 05:00"))


# ---------------------------------------------------------------- NaN, NULL, inf in the middle

N = Tag(6, "N")
N_ROWS = [
    (6, t("03-02 10:00"), 4.0, False),
    (6, t("03-02 10:15"), NAN, False),
    (6, t("03-02 10:30"), None, False),
    (6, t("03-02 10:45"), 8.0, False),
    (6, t("03-02 11:30"), -INF, False),
    (6, t("03-02 11:45"), 2.0, False),
]


def test_nan_null_and_inf_are_gaps_in_numeric_samples(engine):
    e = engine(N_ROWS, [N])
    numeric, string = e.samples(D1, D2, HOUR)
    assert string == []
    expected = [
        num(N, t("03-02 10:00"), 6.0, 1800, 4.0, 8.0, 4.0, 8.0, 4),
        num(N, t("03-02 11:00"), 16200 / 2700, 2700, 2.0, 8.0, 8.0, 2.0, 2),
    ]
    expected += [num(N, b, 2.0, 3600, 2.0, 2.0, 2.0, 2.0, 0) for b in hours(D1, 12, 23)]
    assert_rows_equal(numeric, expected)
    quarter, _ = e.samples(t("03-02 10:00"), t("03-02 11:00"), 15 * MINUTE)
    assert_rows_equal(
        quarter,
        [
            num(N, t("03-02 10:00"), 4.0, 900, 4.0, 4.0, 4.0, 4.0, 1),
            gap(N, t("03-02 10:15"), 1),
            gap(N, t("03-02 10:30"), 1),
            num(N, t("03-02 10:45"), 8.0, 900, 8.0, 8.0, 8.0, 8.0, 1),
        ],
    )


def test_nan_null_and_inf_runs_are_spans(engine):
    assert_rows_equal(
        engine(N_ROWS, [N]).spans(D1, D2),
        [
            span(N, 4.0, t("03-02 10:00"), t("03-02 10:15"), t("03-02 10:00"), t("03-02 10:15")),
            span(N, NAN, t("03-02 10:15"), t("03-02 10:30"), t("03-02 10:15"), t("03-02 10:30")),
            span(N, None, t("03-02 10:30"), t("03-02 10:45"), t("03-02 10:30"), t("03-02 10:45")),
            span(N, 8.0, t("03-02 10:45"), t("03-02 11:30"), t("03-02 10:45"), t("03-02 11:30")),
            span(N, -INF, t("03-02 11:30"), t("03-02 11:45"), t("03-02 11:30"), t("03-02 11:45")),
            span(N, 2.0, t("03-02 11:45"), None, t("03-02 11:45"), D2),
        ],
    )


NAN_RUN = Tag(7, "L2")
NAN_RUN_ROWS = [
    (7, t("03-01 06:00"), NAN, False),
    (7, t("03-01 18:00"), NAN, False),
    (7, t("03-01 18:00"), 5.0, False),  # NaN sorts above every number: NaN kept
]


def test_gap_only_day_still_has_buckets_and_one_nan_span(engine):
    e = engine(NAN_RUN_ROWS, [NAN_RUN])
    numeric, _ = e.samples(D1, D2, HOUR)
    assert_rows_equal(numeric, [gap(NAN_RUN, b, 0) for b in hours(D1, 0, 23)])
    assert_rows_equal(e.spans(D1, D2), [span(NAN_RUN, NAN, t("03-01 06:00"), None, D1, D2)])


# ---------------------------------------------------------------- value equality in spans

U = Tag(8, "U")
U_ROWS = [
    (8, t("03-02 03:00"), None, False),
    (8, t("03-02 03:10"), None, True),  # NULL string equals NULL number
    (8, t("03-02 03:20"), 1.0, False),
    (8, t("03-02 03:40"), "1", True),  # the string "1" differs from the number 1
    (8, t("03-02 04:00"), 0.0, False),
    (8, t("03-02 04:10"), -0.0, False),  # -0.0 equals 0.0
]


def test_null_runs_merge_across_tables_but_number_and_string_differ(engine):
    got = engine(U_ROWS, [U]).spans(D1, D2)
    assert_rows_equal(
        got,
        [
            span(U, None, t("03-02 03:00"), t("03-02 03:20"), t("03-02 03:00"), t("03-02 03:20")),
            span(U, 1.0, t("03-02 03:20"), t("03-02 03:40"), t("03-02 03:20"), t("03-02 03:40")),
            span(U, "1", t("03-02 03:40"), t("03-02 04:00"), t("03-02 03:40"), t("03-02 04:00")),
            span(U, 0.0, t("03-02 04:00"), None, t("03-02 04:00"), D2),
        ],
    )


# ---------------------------------------------------------------- duplicates and orphans

P = Tag(9, "P")
Q = Tag(10, "Q")
DUP_ROWS = [
    # P numeric only
    (9, t("03-02 06:00"), 1.0, False),
    (9, t("03-02 06:00"), 5.0, False),
    (9, t("03-02 06:00"), None, False),  # keep 5
    (9, t("03-02 07:00"), 3.0, False),
    (9, t("03-02 07:00"), NAN, False),
    (9, t("03-02 07:00"), INF, False),  # keep NaN (above +inf)
    (9, t("03-02 08:00"), None, False),
    (9, t("03-02 08:00"), None, False),  # keep NULL
    (9, t("03-02 09:00"), -INF, False),
    (9, t("03-02 09:00"), 2.0, False),  # keep 2
    # Q mixed: a string row wins over any numeric row at the same instant
    (10, t("03-02 06:00"), 7.0, False),
    (10, t("03-02 06:00"), "x", True),  # keep "x"
    (10, t("03-02 07:00"), None, True),
    (10, t("03-02 07:00"), 3.0, False),  # keep NULL str
    (10, t("03-02 08:00"), "b", True),
    (10, t("03-02 08:00"), "a", True),
    (10, t("03-02 08:00"), None, True),
    (10, t("03-02 08:00"), 9.0, False),  # keep "b"
    (10, t("03-02 09:00"), "z", True),
    (10, t("03-02 09:00"), "é", True),  # keep "é" (U+00E9)
]


def test_duplicate_timestamps_resolved_and_counted(engine):
    got, stats = engine(DUP_ROWS, [P, Q]).transitions(D1, D2)
    assert_rows_equal(
        got,
        [
            trans(P, t("03-02 06:00"), 5.0, "numeric"),
            trans(P, t("03-02 07:00"), NAN, "numeric"),
            trans(P, t("03-02 08:00"), None, "numeric"),
            trans(P, t("03-02 09:00"), 2.0, "numeric"),
            trans(Q, t("03-02 06:00"), "x", "string"),
            trans(Q, t("03-02 07:00"), None, "string"),
            trans(Q, t("03-02 08:00"), "b", "string"),
            trans(Q, t("03-02 09:00"), "é", "string"),
        ],
    )
    assert stats == {"rows_in": 20, "duplicates_dropped": 12, "orphans_skipped": 0}


def test_duplicates_count_once_in_samples(engine):
    numeric, string = engine(DUP_ROWS, [P, Q]).samples(D1, D2, DAY)
    # P: 5 on 06-07, NaN 07-08, NULL 08-09, 2 from 09:00 on: covered 3600 + 15 h
    assert_rows_equal(
        numeric, [num(P, D1, (5 * 3600 + 2 * 54000) / 57600, 57600, 2.0, 5.0, 5.0, 2.0, 4)]
    )
    # Q has only string transitions kept, but it has numeric rows in the day; the spec
    # puts a tag in numeric samples by its *kept* transitions and carry-in, so Q is only
    # in the string samples.
    assert_rows_equal(
        string,
        [
            strs(
                Q,
                D1,
                3600 + 3600 + 15 * 3600,
                "x",
                "é",
                "é",
                4,
                [("b", 3600), ("x", 3600), ("é", 15 * 3600)],
            )
        ],
    )


K = Tag(11, "K")
ORPHAN_ROWS = [
    (11, t("03-01 12:00"), 1.0, False),
    (42, t("03-01 12:00"), 9.0, False),  # orphan before the day: in the raw carry-in
    (11, t("03-02 12:00"), 2.0, False),
    (42, t("03-02 12:00"), 3.0, False),
    (42, t("03-02 13:00"), "s", True),
    (77, t("03-02 14:00"), None, False),
]


def test_orphan_rows_are_skipped_and_counted(engine):
    e = engine(ORPHAN_ROWS, [K])
    got, stats = e.transitions(D1, D2)
    assert_rows_equal(got, [trans(K, t("03-02 12:00"), 2.0, "numeric")])
    assert stats == {"rows_in": 4, "duplicates_dropped": 0, "orphans_skipped": 3}
    assert_rows_equal(
        e.carry_in(D1),
        [{**trans(K, t("03-01 12:00"), 1.0, "numeric"), "run_begin_at": t("03-01 12:00")}],
    )
    assert [s["tag_id"] for s in e.spans(D1, D2)] == [11, 11]
    numeric, string = e.samples(D1, D2, DAY)
    assert [r["tag_id"] for r in numeric] == [11] and string == []


def test_orphan_rows_at_one_instant_all_count_as_orphans(engine):
    rows = [
        (42, t("03-02 12:00"), 1.0, False),
        (42, t("03-02 12:00"), 2.0, False),
        (42, t("03-02 12:00"), "a", True),
        (11, t("03-02 12:00"), 1.0, False),
    ]
    got, stats = engine(rows, [K]).transitions(D1, D2)
    assert len(got) == 1
    assert stats == {"rows_in": 4, "duplicates_dropped": 0, "orphans_skipped": 3}


# ---------------------------------------------------------------- strings

STR = Tag(12, "S", death_at_us=t("03-02 15:00"))
STR_ROWS = [
    (12, t("03-02 12:00"), "b", True),
    (12, t("03-02 12:20"), "a", True),
    (12, t("03-02 12:40"), "c", True),
    (12, t("03-02 13:00"), "B", True),
    (12, t("03-02 13:30"), "b", True),
    (12, t("03-02 14:00"), None, True),
    (12, t("03-02 14:30"), "", True),  # the empty string is a string, not a gap
]


def test_string_mode_ties_go_to_smallest_string(engine):
    numeric, string = engine(STR_ROWS, [STR]).samples(D1, D2, HOUR)
    assert numeric == []
    assert_rows_equal(
        string,
        [
            strs(
                STR,
                t("03-02 12:00"),
                3600,
                "b",
                "c",
                "a",
                3,
                [("a", 1200), ("b", 1200), ("c", 1200)],
            ),
            strs(STR, t("03-02 13:00"), 3600, "B", "b", "B", 2, [("B", 1800), ("b", 1800)]),
            strs(STR, t("03-02 14:00"), 1800, "", "", "", 2, [("", 1800)]),
        ],
    )


def test_string_daily_sample_sums_held_time_per_string(engine):
    _, string = engine(STR_ROWS, [STR]).samples(D1, D2, DAY)
    assert_rows_equal(
        string,
        [
            strs(
                STR,
                D1,
                9000,
                "b",
                "",
                "b",
                7,
                [("", 1800), ("B", 1800), ("a", 1200), ("b", 3000), ("c", 1200)],
            )
        ],
    )


def test_string_null_bucket_is_emitted_with_empty_held_map(engine):
    _, string = engine(STR_ROWS, [STR]).samples(t("03-02 14:00"), t("03-02 14:30"), 30 * MINUTE)
    assert_rows_equal(string, [strs(STR, t("03-02 14:00"), 0, None, None, None, 1, [])])


def test_string_spans_end_at_death(engine):
    got = engine(STR_ROWS, [STR]).spans(D1, D2)
    assert [(s["value_string"], s["raw_end_at"]) for s in got] == [
        ("b", t("03-02 12:20")),
        ("a", t("03-02 12:40")),
        ("c", t("03-02 13:00")),
        ("B", t("03-02 13:30")),
        ("b", t("03-02 14:00")),
        (None, t("03-02 14:30")),
        ("", t("03-02 15:00")),
    ]
    assert all(s["value_double"] is None for s in got)


def test_rollup_of_string_hours_to_day_sums_held_time():
    w = Window(STR_ROWS, [STR], D1, D2, TENANT)
    daily = call_rollup(w.samples(HOUR).string, DAY)
    assert_rows_equal(
        plain_rows(daily, S.SAMPLES_STR),
        [
            strs(
                STR,
                D1,
                9000,
                "b",
                "",
                "b",
                7,
                [("", 1800), ("B", 1800), ("a", 1200), ("b", 3000), ("c", 1200)],
            )
        ],
    )


def test_rollup_of_design_hours_to_day_matches_direct_day():
    w = Window(DESIGN_ROWS, [T], D1, D2, TENANT)
    daily = call_rollup(w.samples(HOUR).numeric, DAY)
    assert_rows_equal(
        plain_rows(daily, S.SAMPLES), [num(T, D1, 153000 / 7200, 7200, 10.0, 30.0, 10.0, 30.0, 4)]
    )


def test_rollup_of_gap_only_hours_keeps_the_day_with_null_values():
    w = Window(NAN_RUN_ROWS, [NAN_RUN], D1, D2, TENANT)
    daily = call_rollup(w.samples(HOUR).numeric, DAY)
    assert_rows_equal(plain_rows(daily, S.SAMPLES), [gap(NAN_RUN, D1, 0)])


# ---------------------------------------------------------------- mixed kinds

M = Tag(13, "M", death_at_us=t("03-02 02:00"))
M_ROWS = [
    (13, t("03-01 23:30"), 2.0, False),
    (13, t("03-02 00:30"), "on", True),
    (13, t("03-02 01:00"), 4.0, False),
    (13, t("03-02 01:30"), None, True),
]


def test_mixed_tag_appears_in_numeric_and_string_samples(engine):
    numeric, string = engine(M_ROWS, [M]).samples(D1, D2, HOUR)
    assert_rows_equal(
        numeric,
        [
            num(M, t("03-02 00:00"), 2.0, 1800, 2.0, 2.0, 2.0, 2.0, 1),
            num(M, t("03-02 01:00"), 4.0, 1800, 4.0, 4.0, 4.0, 4.0, 2),
        ],
    )
    assert_rows_equal(
        string,
        [
            strs(M, t("03-02 00:00"), 1800, "on", "on", "on", 1, [("on", 1800)]),
            strs(M, t("03-02 01:00"), 0, None, None, None, 2, []),
        ],
    )


def test_mixed_tag_spans_switch_between_kinds(engine):
    assert_rows_equal(
        engine(M_ROWS, [M]).spans(D1, D2),
        [
            span(M, 2.0, t("03-01 23:30"), t("03-02 00:30"), D1, t("03-02 00:30")),
            span(M, "on", t("03-02 00:30"), t("03-02 01:00"), t("03-02 00:30"), t("03-02 01:00")),
            span(M, 4.0, t("03-02 01:00"), t("03-02 01:30"), t("03-02 01:00"), t("03-02 01:30")),
            span(M, None, t("03-02 01:30"), t("03-02 02:00"), t("03-02 01:30"), t("03-02 02:00")),
        ],
    )


def test_string_carry_in_puts_numeric_only_day_in_string_samples(engine):
    tag = Tag(14, "W")
    rows = [(14, t("03-01 22:00"), "idle", True), (14, t("03-02 06:00"), 1.5, False)]
    numeric, string = engine(rows, [tag]).samples(D1, D2, DAY)
    assert_rows_equal(numeric, [num(tag, D1, 1.5, 18 * 3600, 1.5, 1.5, 1.5, 1.5, 1)])
    assert_rows_equal(
        string, [strs(tag, D1, 6 * 3600, "idle", "idle", "idle", 1, [("idle", 6 * 3600)])]
    )


# ---------------------------------------------------------------- death and rebirth

R = Tag(15, "R", death_at_us=t("03-02 02:00"))
R_ROWS = [(15, t("03-02 01:00"), 5.0, False), (15, t("03-02 03:30"), 5.0, False)]


def test_tag_reborn_after_death_starts_a_new_span(engine):
    e = engine(R_ROWS, [R])
    assert_rows_equal(
        e.spans(D1, D2),
        [
            span(R, 5.0, t("03-02 01:00"), t("03-02 02:00"), t("03-02 01:00"), t("03-02 02:00")),
            span(R, 5.0, t("03-02 03:30"), None, t("03-02 03:30"), D2),
        ],
    )
    numeric, _ = e.samples(D1, D2, HOUR)
    expected = [
        num(R, t("03-02 01:00"), 5.0, 3600, 5.0, 5.0, 5.0, 5.0, 1),
        num(R, t("03-02 03:00"), 5.0, 1800, 5.0, 5.0, 5.0, 5.0, 1),
    ]
    expected += [num(R, b, 5.0, 3600, 5.0, 5.0, 5.0, 5.0, 0) for b in hours(D1, 4, 23)]
    assert_rows_equal(numeric, expected)
    # next day: the carry-in is after death_at, so the tag is alive
    assert_rows_equal(
        e.carry_in(D2),
        [{**trans(R, t("03-02 03:30"), 5.0, "numeric"), "run_begin_at": t("03-02 03:30")}],
    )
    assert_rows_equal(e.spans(D2, D2 + DAY), [span(R, 5.0, t("03-02 03:30"), None, D2, D2 + DAY)])


R2 = Tag(16, "R2", death_at_us=t("03-01 02:00"))
R2_ROWS = [
    (16, t("03-01 01:00"), 7.0, False),
    (16, t("03-01 05:00"), 7.0, False),
    (16, t("03-01 06:00"), 7.0, False),
]


def test_carry_in_after_rebirth_begins_its_run_after_death(engine):
    e = engine(R2_ROWS, [R2])
    assert_rows_equal(
        e.carry_in(D1),
        [{**trans(R2, t("03-01 06:00"), 7.0, "numeric"), "run_begin_at": t("03-01 05:00")}],
    )
    assert_rows_equal(e.spans(D1, D2), [span(R2, 7.0, t("03-01 05:00"), None, D1, D2)])


def test_tag_dead_before_the_day_has_no_carry_in_and_no_output(engine):
    x = Tag(17, "X", death_at_us=t("03-01 12:00"))
    rows = [(17, t("03-01 10:00"), 1.0, False)]
    e = engine(rows, [x])
    assert e.carry_in(D1) == []
    assert e.spans(D1, D2) == []
    assert e.samples(D1, D2, HOUR) == ([], [])


def test_tag_dying_exactly_at_midnight(engine):
    y = Tag(18, "Y", death_at_us=D1)
    rows = [(18, t("03-01 10:00"), 1.0, False)]
    e = engine(rows, [y])
    # dead from 00:00: nothing is carried into the day
    assert_rows_equal(e.carry_in(D1), [])
    assert e.spans(D1, D2) == []
    assert e.samples(D1, D2, HOUR) == ([], [])
    # seen from the day before, the run ends exactly at d1: raw_end_at null
    assert_rows_equal(
        e.spans(t("03-01 00:00"), D1),
        [span(y, 1.0, t("03-01 10:00"), None, t("03-01 10:00"), D1)],
    )


def test_death_exactly_at_midnight_carries_nothing_into_the_day(engine):
    # Death at 00:00 takes effect at 00:00: the tag is dead when the day starts, so its
    # numeric last row is no carry-in and the string-only revival is in string samples only
    y = Tag(40, "Y2", death_at_us=D1)
    rows = [(40, t("03-01 10:00"), 1.0, False), (40, t("03-02 06:00"), "s", True)]
    numeric, string = engine(rows, [y]).samples(D1, D2, DAY)
    assert_rows_equal(numeric, [])
    assert_rows_equal(string, [strs(y, D1, 18 * 3600, "s", "s", "s", 1, [("s", 18 * 3600)])])


Z = Tag(19, "Z", death_at_us=t("03-02 05:00"))
Z_ROWS = [
    (19, t("03-02 04:00"), 1.0, False),
    (19, t("03-02 05:00"), 2.0, False),  # exactly at death_at: holds for zero time
    (19, t("03-02 07:00"), 3.0, False),  # brings the tag back
]


def test_row_exactly_at_death_holds_for_zero_time_but_counts(engine):
    e = engine(Z_ROWS, [Z])
    assert_rows_equal(
        e.spans(D1, D2),
        [
            span(Z, 1.0, t("03-02 04:00"), t("03-02 05:00"), t("03-02 04:00"), t("03-02 05:00")),
            span(Z, 3.0, t("03-02 07:00"), None, t("03-02 07:00"), D2),
        ],
    )
    numeric, _ = e.samples(D1, D2, HOUR)
    expected = [
        num(Z, t("03-02 04:00"), 1.0, 3600, 1.0, 1.0, 1.0, 1.0, 1),
        gap(Z, t("03-02 05:00"), 1),  # no defined time, but a transition: emitted
        num(Z, t("03-02 07:00"), 3.0, 3600, 3.0, 3.0, 3.0, 3.0, 1),
    ]
    expected += [num(Z, b, 3.0, 3600, 3.0, 3.0, 3.0, 3.0, 0) for b in hours(D1, 8, 23)]
    assert_rows_equal(numeric, expected)
    got, stats = e.transitions(D1, D2)
    assert [r["time"] for r in got] == [t("03-02 04:00"), t("03-02 05:00"), t("03-02 07:00")]


def test_equal_value_at_death_does_not_extend_the_run(engine):
    z = Tag(20, "Z2", death_at_us=t("03-02 05:00"))
    rows = [
        (20, t("03-02 04:00"), 1.0, False),
        (20, t("03-02 05:00"), 1.0, False),
        (20, t("03-02 06:00"), 1.0, False),
    ]
    assert_rows_equal(
        engine(rows, [z]).spans(D1, D2),
        [
            span(z, 1.0, t("03-02 04:00"), t("03-02 05:00"), t("03-02 04:00"), t("03-02 05:00")),
            span(z, 1.0, t("03-02 06:00"), None, t("03-02 06:00"), D2),
        ],
    )


# ---------------------------------------------------------------- runs from days before

LONG = Tag(21, "L")
LONG_ROWS = [
    (21, t("02-27 08:00"), 3.0, False),
    (21, t("02-28 09:00"), 3.0, False),
    (21, t("03-01 10:00"), 3.0, False),
    (21, t("03-02 11:00"), 3.0, False),
    (21, t("03-02 12:00"), 4.0, False),
]


def test_run_started_days_before_gets_true_raw_begin(engine):
    e = engine(LONG_ROWS, [LONG])
    assert_rows_equal(
        e.carry_in(D1),
        [{**trans(LONG, t("03-01 10:00"), 3.0, "numeric"), "run_begin_at": t("02-27 08:00")}],
    )
    got = e.spans(D1, D2)
    assert_rows_equal(
        got,
        [
            span(LONG, 3.0, t("02-27 08:00"), t("03-02 12:00"), D1, t("03-02 12:00")),
            span(LONG, 4.0, t("03-02 12:00"), None, t("03-02 12:00"), D2),
        ],
    )
    assert got[0]["id"] == span_id(TENANT, 21, t("02-27 08:00"))


def test_spans_sorted_by_codepoint_tag_name(engine):
    tags = [Tag(31, "b"), Tag(32, "B"), Tag(33, "a"), Tag(34, "é")]
    rows = [
        (31, t("03-02 01:00"), 1.0, False),
        (32, t("03-02 02:00"), 1.0, False),
        (33, t("03-02 03:00"), 1.0, False),
        (34, t("03-02 00:00"), "v", True),
    ]
    e = engine(rows, tags)
    assert [s["tag_name"] for s in e.spans(D1, D2)] == ["B", "a", "b", "é"]
    got, _ = e.transitions(D1, D2)
    assert [r["tag_name"] for r in got] == ["B", "a", "b", "é"]


def test_span_ids_differ_by_tenant_tag_and_begin():
    a = span_id("acme", 1, t("03-02 00:00"))
    assert a != span_id("other", 1, t("03-02 00:00"))
    assert a != span_id("acme", 2, t("03-02 00:00"))
    assert a != span_id("acme", 1, t("03-02 00:00") + 1)
    assert -(2**63) <= a < 2**63


def test_a_computed_id_never_takes_an_id_of_the_spans_people_add():
    import numpy as np

    from tagflow.annotations.records import is_user_span_id
    from tagflow.transforms.spans import outside_user_range

    hashes = np.array([2**63, 2**63 + 2**32 - 1, 2**63 + 2**32, 2**63 - 1, 0], dtype=np.uint64)
    ids = outside_user_range(hashes).view(np.int64).tolist()
    assert not any(is_user_span_id(i) for i in ids)
    # Those in the range move up by 2^62 (bit 62 flipped); the others keep their hash.
    assert ids[:2] == [-(2**63) + 2**62, -(2**63) + 2**32 - 1 + 2**62]
    assert ids[2:] == hashes[2:].view(np.int64).tolist()
