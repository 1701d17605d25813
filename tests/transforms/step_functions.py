"""The Arrow form of a derived tag's step function, for tests that write inputs and read
results as tables: one row per constant piece, sorted by start; `end` null when nothing ended
the piece; NULL where is_null, a string where is_string, else the number."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tagflow.schemas.arrow import TS
from tagflow.transforms.columns import (
    NO_TIME,
    float_values,
    nullable_float,
    string_codes,
    strings_by_code,
    time_us,
    us_to_time,
)
from tagflow.transforms.derived.evaluate import StepFunction

STEP_FUNCTION = pa.schema(
    [
        ("start", TS),
        ("end", TS),
        ("value_double", pa.float64()),
        ("value_string", pa.string()),
        ("is_string", pa.bool_()),
        ("is_null", pa.bool_()),
    ]
)


def step_function_of(table: pa.Table) -> StepFunction:
    """From a table with the columns of STEP_FUNCTION (start and end as timestamps or int64
    µs). is_string and is_null may be left out: then a row is a string where value_string
    is not null, and NULL where the value column of its kind is null."""
    start = time_us(table.column("start"))
    end = time_us(table.column("end"), null_as=NO_TIME)
    value_string = table.column("value_string")
    number = float_values(table.column("value_double"))
    number_missing = table.column("value_double").is_null().to_numpy(zero_copy_only=False)
    string_missing = value_string.is_null().to_numpy(zero_copy_only=False)
    if "is_string" in table.column_names:
        is_string = table.column("is_string").fill_null(False).to_numpy(zero_copy_only=False)
    else:
        is_string = ~string_missing
    is_null = np.where(is_string, string_missing, number_missing)
    if "is_null" in table.column_names:
        is_null |= table.column("is_null").fill_null(False).to_numpy(zero_copy_only=False)
    (codes,), strings = string_codes(value_string)
    string_code = np.where(is_string & ~is_null, codes, -1).astype(np.int32)
    number = np.where(is_string | is_null, np.nan, number)
    return StepFunction(start, end, number, string_code, is_null.astype(bool), strings)


def step_function_table(function: StepFunction) -> pa.Table:
    """The pieces as a STEP_FUNCTION table."""
    is_string = function.string_code >= 0
    not_number = function.is_null | is_string
    return pa.Table.from_arrays(
        [
            us_to_time(function.start),
            us_to_time(function.end, function.end == NO_TIME),
            nullable_float(np.where(not_number, np.nan, function.value_double), not_number),
            strings_by_code(function.strings, np.where(function.is_null, -1, function.string_code)),
            pa.array(is_string & ~function.is_null),
            pa.array(function.is_null),
        ],
        schema=STEP_FUNCTION,
    )
