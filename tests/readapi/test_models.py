"""The client's records from Arrow tables: datetimes built once per distinct instant must equal
Arrow's own conversion, NULLs included, whatever the columns share."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from tagflow.readapi.models import _times
from tagflow.schemas.arrow import TS

# Within the years Python's datetime holds, microseconds from the epoch.
MICROS = st.integers(-62_135_596_800_000_000, 253_402_300_799_999_999)


@given(st.lists(st.lists(st.none() | MICROS, max_size=30), min_size=1, max_size=4))
def test_times_equal_arrow_conversion(columns):
    arrays = [pa.array(values, pa.int64()).cast(TS) for values in columns]
    assert _times(*arrays) == [array.to_pylist() for array in arrays]


def test_shared_instants_are_one_object_and_nulls_are_none():
    begin = pa.array([0, 60_000_000, None], pa.int64()).cast(TS)
    end = pa.array([60_000_000, 120_000_000, None], pa.int64()).cast(TS)
    begins, ends = _times(begin, end)
    assert begins[1] is ends[0]
    assert begins[1] == datetime(1970, 1, 1, 0, 1, tzinfo=UTC)
    assert begins[2] is None and ends[2] is None
