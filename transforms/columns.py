"""Conversions between Arrow columns and the numpy arrays the transforms compute on.

Times become int64 microseconds since the Unix epoch, nullable columns become a value array
plus a null mask, and strings become integer codes whose order is codepoint order, so that
"smallest string" and "greatest string" are integer comparisons.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tagflow.errors import InvalidTimeRange
from tagflow.schemas.arrow import TS

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)

# "Never": the end of a piece that no later row or death ends. Larger than any real time, so
# min/max clipping against a window needs no special case.
NO_TIME = np.iinfo(np.int64).max

Column: TypeAlias = pa.Array | pa.ChunkedArray


def datetime_to_us(value: datetime, what: str) -> int:
    """Microseconds since the epoch of an aware datetime; naive datetimes are refused."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidTimeRange(f"{what} must be a timezone-aware datetime (UTC), got {value!r}")
    return (value - EPOCH) // ONE_US


def width_to_us(value: timedelta, what: str) -> int:
    """Microseconds of a positive bucket width."""
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise InvalidTimeRange(f"{what} must be a positive timedelta, got {value!r}")
    return value // ONE_US


def offset_to_us(value: timedelta, width_us: int) -> int:
    """Bucket offset in microseconds, reduced into [0, width) (a whole width is no offset)."""
    if not isinstance(value, timedelta):
        raise InvalidTimeRange(f"bucket offset must be a timedelta, got {value!r}")
    return (value // ONE_US) % width_us


def window_to_us(start: datetime, end: datetime) -> tuple[int, int]:
    """A [start, end) window in microseconds; reversed or empty windows are refused."""
    start_us = datetime_to_us(start, "window start")
    end_us = datetime_to_us(end, "window end")
    if end_us <= start_us:
        raise InvalidTimeRange(
            f"window end {end.isoformat()} is not after its start {start.isoformat()}"
        )
    return start_us, end_us


def _single(column: Column) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def time_us(column: Column, null_as: int | None = None) -> np.ndarray:
    """int64 microseconds of a timestamp[us] column; nulls become `null_as` (required if any)."""
    ints = _single(column).cast(pa.int64())
    if ints.null_count:
        if null_as is None:
            raise ValueError("unexpected null time")
        ints = pc.fill_null(ints, null_as)
    return ints.to_numpy(zero_copy_only=False)


def us_to_time(values: np.ndarray, null_mask: np.ndarray | None = None) -> pa.Array:
    """A timestamp[us, UTC] array from int64 microseconds (null where `null_mask`)."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    if null_mask is not None and null_mask.any():
        return pa.array(values, type=TS, mask=null_mask)
    return pa.array(values, type=pa.int64()).view(TS)


def is_null(column: Column) -> np.ndarray:
    """Boolean null mask of a column (NaN is a value, not a null)."""
    if column.null_count == 0:
        return np.zeros(len(column), dtype=bool)
    return _single(column).is_null().to_numpy(zero_copy_only=False)


def bool_values(column: Column) -> np.ndarray:
    """Boolean values of a column; nulls read as False."""
    values = _single(column)
    if values.null_count:
        values = pc.fill_null(values, False)
    return values.to_numpy(zero_copy_only=False).astype(bool, copy=False)


def float_values(column: Column) -> np.ndarray:
    """float64 values of a column; nulls read as NaN, so pair with `is_null` where it matters."""
    return _single(column).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def nullable_float(values: np.ndarray, null_mask: np.ndarray) -> pa.Array:
    values = np.ascontiguousarray(values, dtype=np.float64)
    if null_mask.any():
        return pa.array(values, type=pa.float64(), mask=null_mask)
    return pa.array(values, type=pa.float64())


def equals_string(column: Column, value: str) -> np.ndarray:
    """Boolean mask of rows equal to `value` (null rows are False)."""
    matches = pc.equal(_single(column), value)
    if matches.null_count:
        matches = pc.fill_null(matches, False)
    return matches.to_numpy(zero_copy_only=False)


def string_codes(*columns: Column) -> tuple[list[np.ndarray], pa.Array]:
    """Integer codes of string columns against one shared, sorted dictionary.

    Returns one int64 code array per column (-1 for null) and the dictionary, sorted in
    codepoint order (Arrow compares UTF-8 bytes, whose order is codepoint order), so that
    code order is string order.
    """
    encoded = [pc.dictionary_encode(_single(column)) for column in columns]
    if not encoded:
        return [], pa.array([], type=pa.string())
    all_strings = pa.concat_arrays([e.dictionary.cast(pa.string()) for e in encoded])
    dictionary = pc.unique(all_strings)
    dictionary = dictionary.take(pc.sort_indices(dictionary))
    codes = []
    for e in encoded:
        code_of_entry = (
            pc.index_in(e.dictionary, value_set=dictionary)
            .to_numpy(zero_copy_only=False)
            .astype(np.int64)
        )
        indices = e.indices
        if indices.null_count:
            indices = pc.fill_null(indices, -1)
        index_values = indices.to_numpy(zero_copy_only=False).astype(np.int64)
        # Appending -1 makes index -1 (null) map to code -1.
        codes.append(np.append(code_of_entry, -1)[index_values])
    return codes, dictionary


def strings_by_code(dictionary: pa.Array, codes: np.ndarray) -> pa.Array:
    """The strings of `codes` (null where the code is -1)."""
    missing = codes < 0
    indices = pa.array(
        np.where(missing, 0, codes).astype(np.int64), mask=missing if missing.any() else None
    )
    if len(dictionary) == 0:
        return pa.nulls(len(codes), type=pa.string())
    return dictionary.take(indices)


def packed_order(rank: np.ndarray, time: np.ndarray) -> np.ndarray | None:
    """A stable sort order of rows by (rank, time), or None when they are already in order.

    Packs both into one int64 when their ranges fit, so one stable (timsort) argsort does it;
    timsort is near linear on inputs made of a few sorted runs, which is what the source and
    the concatenation of carry-in and transitions produce.
    """
    n = len(rank)
    if n < 2:
        return None
    t_min = int(time.min())
    t_bits = int(time.max() - t_min).bit_length()
    r_bits = int(rank.max()).bit_length()
    if t_bits + r_bits <= 62:
        key = (rank.astype(np.int64) << t_bits) | (time - t_min)
        if bool((key[1:] >= key[:-1]).all()):
            return None
        return np.argsort(key, kind="stable")
    order = np.lexsort((time, rank))
    if bool((order[1:] > order[:-1]).all()):
        return None
    return order
