"""The DESIGN §2 worked example through the transforms: spans, 1h samples, 1m → 1h roll-up."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from tagflow.schemas.arrow import RAW_CARRY_IN, RAW_ROWS, SAMPLES, SPANS, TAGS
from tagflow.transforms.rollup import rollup
from tagflow.transforms.samples import samples
from tagflow.transforms.spans import spans_for_day
from tagflow.transforms.transitions import carry_in_for_day, resolve_rows

DAY = datetime(2026, 3, 2, tzinfo=UTC)
NEXT_DAY = DAY + timedelta(days=1)


def at(hour: int, minute: int = 0, day: datetime = DAY) -> datetime:
    return day + timedelta(hours=hour, minutes=minute)


TAGS_TABLE = pa.Table.from_pylist(
    [
        {
            "tag_id": 7,
            "tag_name": "T",
            "birth_at": datetime(2026, 1, 1, tzinfo=UTC),
            "death_at": at(2, 30),
            "value_kind": "numeric",
        }
    ],
    schema=TAGS,
)
RAW_ROWS_TABLE = pa.Table.from_pylist(
    [
        {"tag_id": 7, "time": at(0, 30), "value_double": 20.0, "is_string": False},
        {"tag_id": 7, "time": at(1, 0), "value_double": 20.0, "is_string": False},
        {"tag_id": 7, "time": at(1, 15), "value_double": math.nan, "is_string": False},
        {"tag_id": 7, "time": at(1, 45), "value_double": 30.0, "is_string": False},
    ],
    schema=RAW_ROWS,
)
RAW_CARRY_IN_TABLE = pa.Table.from_pylist(
    [
        {
            "tag_id": 7,
            "time": at(22, 0, DAY - timedelta(days=1)),
            "value_double": 10.0,
            "is_string": False,
            "run_begin_at": at(22, 0, DAY - timedelta(days=1)),
        }
    ],
    schema=RAW_CARRY_IN,
)


@pytest.fixture(scope="module")
def day_inputs() -> tuple[pa.Table, pa.Table]:
    transitions, stats = resolve_rows(RAW_ROWS_TABLE, TAGS_TABLE)
    assert stats == {"rows_in": 4, "duplicates_dropped": 0, "orphans_skipped": 0}
    carry_in = carry_in_for_day(RAW_CARRY_IN_TABLE, TAGS_TABLE, DAY)
    return transitions, carry_in


def _splitmix64(x: int) -> int:
    mask = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & mask
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def _span_id(tenant: str, tag_id: int, raw_begin: datetime) -> int:
    mask = (1 << 64) - 1
    key = int.from_bytes(hashlib.blake2b(tenant.encode(), digest_size=8).digest(), "little")
    begin_us = (raw_begin - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    h = _splitmix64(key ^ _splitmix64((tag_id & mask) ^ _splitmix64(begin_us & mask)))
    return h - (1 << 64) if h >= 1 << 63 else h


def test_worked_example_spans(day_inputs: tuple[pa.Table, pa.Table]) -> None:
    transitions, carry_in = day_inputs
    spans = spans_for_day(transitions, carry_in, DAY, NEXT_DAY, TAGS_TABLE, "acme")
    assert spans.schema == SPANS
    rows = spans.to_pylist()
    assert [(r["raw_begin_at"], r["raw_end_at"], r["begin_at"], r["end_at"]) for r in rows] == [
        (at(22, 0, DAY - timedelta(days=1)), at(0, 30), at(0, 0), at(0, 30)),
        (at(0, 30), at(1, 15), at(0, 30), at(1, 15)),
        (at(1, 15), at(1, 45), at(1, 15), at(1, 45)),
        (at(1, 45), at(2, 30), at(1, 45), at(2, 30)),
    ]
    values = [r["value_double"] for r in rows]
    assert values[0] == 10.0 and values[1] == 20.0 and math.isnan(values[2]) and values[3] == 30.0
    assert all(r["value_string"] is None and r["tag_name"] == "T" for r in rows)
    assert [r["id"] for r in rows] == [_span_id("acme", 7, r["raw_begin_at"]) for r in rows]


def test_worked_example_hourly_samples(day_inputs: tuple[pa.Table, pa.Table]) -> None:
    transitions, carry_in = day_inputs
    result = samples(transitions, carry_in, DAY, NEXT_DAY, timedelta(hours=1), TAGS_TABLE)
    assert result.numeric.schema == SAMPLES
    assert result.string.num_rows == 0
    got = [
        (
            r["bucket_start"],
            r["twa"],
            r["covered_s"],
            r["min"],
            r["max"],
            r["first"],
            r["last"],
            r["count"],
        )
        for r in result.numeric.to_pylist()
    ]
    assert got == [
        (at(0), 15.0, 3600.0, 10.0, 20.0, 10.0, 20.0, 1),
        (at(1), 25.0, 1800.0, 20.0, 30.0, 20.0, 30.0, 3),
        (at(2), 30.0, 1800.0, 30.0, 30.0, 30.0, 30.0, 0),
    ]


def test_worked_example_rollup_from_minutes_equals_hourly(
    day_inputs: tuple[pa.Table, pa.Table],
) -> None:
    transitions, carry_in = day_inputs
    minutes = samples(transitions, carry_in, DAY, NEXT_DAY, timedelta(minutes=1), TAGS_TABLE)
    hourly = samples(transitions, carry_in, DAY, NEXT_DAY, timedelta(hours=1), TAGS_TABLE)
    rolled = rollup(minutes.numeric, timedelta(hours=1))
    assert rolled.schema == SAMPLES
    assert rolled.to_pylist() == hourly.numeric.to_pylist()
