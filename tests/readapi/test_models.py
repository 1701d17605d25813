"""The client's records from Arrow tables: datetimes built once per distinct instant must equal
Arrow's own conversion, NULLs included, whatever the columns share."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagflow.readapi.models import (
    Span,
    Tag,
    _times,
    spans_from_table,
    tags_from_table,
    wide_frame,
)
from tagflow.schemas.arrow import TS

# Within the years Python's datetime holds, microseconds from the epoch.
MICROS = st.integers(-62_135_596_800_000_000, 253_402_300_799_999_999)


@given(st.lists(st.lists(st.none() | MICROS, max_size=30), min_size=1, max_size=4))
def test_times_equal_arrow_conversion(columns):
    arrays = [pa.array(values, pa.int64()).cast(TS) for values in columns]
    assert _times(*arrays) == [array.to_pylist() for array in arrays]


@given(st.lists(st.none() | st.sampled_from([0, 1, 2]) | MICROS, min_size=1, max_size=30))
def test_times_of_columns_sharing_neighbours_equal_arrow_conversion(base):
    # A spans answer's columns: each row's end the neighbouring row's begin, either way round,
    # and the raw bounds mostly the bounds.
    columns = [base, base[1:] + base[:1], base[-1:] + base[:-1], base]
    arrays = [pa.array(values, pa.int64()).cast(TS) for values in columns]
    assert _times(*arrays) == [array.to_pylist() for array in arrays]


def test_instants_shared_newest_first_are_one_object():
    # get_spans answers newest first: row i's end is row i - 1's begin.
    begin = pa.array([120_000_000, 60_000_000, 0], pa.int64()).cast(TS)
    end = pa.array([None, 120_000_000, 60_000_000], pa.int64()).cast(TS)
    begins, ends, raw_begins = _times(begin, end, begin)
    assert ends[1] is begins[0] and ends[2] is begins[1] and ends[0] is None
    assert all(raw is mine for raw, mine in zip(raw_begins, begins, strict=True))


def test_shared_instants_are_one_object_and_nulls_are_none():
    begin = pa.array([0, 60_000_000, None], pa.int64()).cast(TS)
    end = pa.array([60_000_000, 120_000_000, None], pa.int64()).cast(TS)
    begins, ends = _times(begin, end)
    assert begins[1] is ends[0]
    assert begins[1] == datetime(1970, 1, 1, 0, 1, tzinfo=UTC)
    assert begins[2] is None and ends[2] is None


def test_spans_from_a_table_are_the_records_the_constructor_builds():
    begin, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)
    table = pa.table(
        {
            "id": [7, 7],
            "tag_name": ["a", "a"],
            "value_double": [float("nan"), None],
            "value_string": [None, "RUN"],
            "begin_at": pa.array([begin, end], TS),
            "end_at": pa.array([end, end + (end - begin)], TS),
            "raw_begin_at": pa.array([begin, end], TS),
            "raw_end_at": pa.array([end, None], TS),
        }
    )
    built = spans_from_table(table)
    expected = [
        Span(7, "a", float("nan"), begin, end, begin, end),
        Span(7, "a", "RUN", end, end + (end - begin), end, None),
    ]
    assert built == expected
    assert [hash(span) for span in built] == [hash(span) for span in expected]
    assert [repr(span) for span in built] == [repr(span) for span in expected]
    with pytest.raises(AttributeError):
        built[0].value = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("numbers", "strings", "values"),
    [
        ([1.5, None], [None, None], [1.5, None]),
        ([None, None], ["RUN", None], ["RUN", None]),
        ([2.0, None], [None, "STOP"], [2.0, "STOP"]),
    ],
)
def test_span_values_are_the_string_else_the_number(numbers, strings, values):
    moments = pa.array([datetime(2026, 3, 1, tzinfo=UTC)] * 2, TS)
    table = pa.table(
        {
            "id": [1, 2],
            "tag_name": ["a", "a"],
            "value_double": pa.array(numbers, pa.float64()),
            "value_string": pa.array(strings, pa.string()),
            "begin_at": moments,
            "end_at": moments,
            "raw_begin_at": moments,
            "raw_end_at": moments,
        }
    )
    assert [span.value for span in spans_from_table(table)] == values


def test_a_wide_frame_keeps_each_column_in_place_whatever_its_name():
    # A tag may be called "time" or "0"; each column converts as Arrow converts it alone.
    table = pa.Table.from_arrays(
        [
            pa.array([0, 60_000_000], pa.int64()).cast(TS),
            pa.array([1.5, None], pa.float64()),
            pa.array(["RUN", None], pa.string()),
            pa.array([None, 2.0], pa.float64()),
        ],
        names=["time", "time", "0", "plant/a"],
    ).replace_schema_metadata({b"pandas": b"{}"})
    frame = wide_frame(table)
    assert list(frame.columns) == ["time", "time", "0", "plant/a"]
    for at in range(table.num_columns):
        expected = table.column(at).to_pandas()
        pd.testing.assert_series_equal(frame.iloc[:, at], expected, check_names=False)


def test_tags_from_a_table_are_the_records_the_constructor_builds():
    born = datetime(2026, 1, 1, tzinfo=UTC)
    table = pa.table(
        {
            "tag_id": pa.array([3, -1], pa.int32()),
            "tag_name": ["plant/a", "plant/twice_a"],
            "birth_at": pa.array([born, None], TS),
            "death_at": pa.array([None, None], TS),
            "derived": [False, True],
            "expression": [None, "2 * tag('plant/a')"],
        }
    )
    built = tags_from_table(table)
    expected = [
        Tag(3, "plant/a", born, None),
        Tag(-1, "plant/twice_a", None, None, True, "2 * tag('plant/a')"),
    ]
    assert built == expected
    assert [hash(tag) for tag in built] == [hash(tag) for tag in expected]
    assert [repr(tag) for tag in built] == [repr(tag) for tag in expected]
    with pytest.raises(FrozenInstanceError):
        built[0].name = "other"  # type: ignore[misc]
