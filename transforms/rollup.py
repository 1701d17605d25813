"""Roll-up of samples to a coarser, aligned width, exactly as if computed at that width: the
read API's answer at a width or offset that is not materialised, from stored buckets.

Covered and held times are summed in integer microseconds, twa is re-weighted by covered
time, first/last come from the first/last fine bucket with covered time. Works on SAMPLES
and SAMPLES_STR tables (decided by the columns).
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa

from tagflow.schemas.arrow import SAMPLES, SAMPLES_STR
from tagflow.transforms.columns import (
    float_values,
    is_null,
    offset_to_us,
    string_codes,
    strings_by_code,
    time_us,
    us_to_time,
    width_to_us,
)
from tagflow.transforms.samples import numeric_statistics
from tagflow.transforms.segments import (
    first_and_last_index,
    held_by_string,
    segment_starts,
    segment_sums,
)
from tagflow.transforms.weighted_mean import weighted_means


def in_tag_bucket_order(table: pa.Table) -> pa.Table:
    """The table itself if each tag's rows are contiguous with rising buckets (a month copy's
    rows, a roll-up's), else sorted by tag id and bucket."""
    tag_id = table.column("tag_id").to_numpy(zero_copy_only=False)
    bucket = time_us(table.column("bucket_start"))
    new_tag = tag_id[1:] != tag_id[:-1]
    # Contiguous: no tag id begins two runs (the runs' ids, not every row's, are compared).
    run_ids = tag_id[np.flatnonzero(np.r_[True, new_tag])] if len(tag_id) else tag_id
    contiguous = len(np.unique(run_ids)) == len(run_ids)
    if contiguous and bool((new_tag | (bucket[1:] > bucket[:-1])).all()):
        return table
    # By tag id, not name: integer keys sort many times faster, and only contiguity matters.
    return table.take(pa.array(np.lexsort((bucket, tag_id))))


def _microseconds(seconds: pa.ChunkedArray) -> np.ndarray:
    return np.rint(float_values(seconds) * 1e6).astype(np.int64)


def _nullable_values(column: pa.ChunkedArray, null_as: float) -> np.ndarray:
    values = float_values(column)
    return np.where(is_null(column), null_as, values)


def _rollup_numeric(table: pa.Table, starts: np.ndarray, covered_us: np.ndarray) -> list[pa.Array]:
    covered = covered_us > 0
    total_us = segment_sums(covered_us, starts)
    twa = _nullable_values(table.column("twa"), 0.0)
    minimum = np.minimum.reduceat(_nullable_values(table.column("min"), np.inf), starts)
    maximum = np.maximum.reduceat(_nullable_values(table.column("max"), -np.inf), starts)
    mean = weighted_means(twa, covered_us, starts, total_us, minimum, maximum)
    mean = np.clip(mean, minimum, maximum) + 0.0
    first_row, last_row = first_and_last_index(covered, starts)
    first = float_values(table.column("first"))[first_row]
    last = float_values(table.column("last"))[last_row]
    count = segment_sums(table.column("count").to_numpy(zero_copy_only=False), starts)
    return numeric_statistics(mean, total_us, minimum, maximum, first, last, count)


def _rollup_string(table: pa.Table, starts: np.ndarray, covered_us: np.ndarray) -> list[pa.Array]:
    covered = covered_us > 0
    total_us = segment_sums(covered_us, starts)
    held_column = table.column("held_s").combine_chunks()
    offsets = held_column.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    # A sliced map array keeps absolute offsets into its unsliced children.
    keys = held_column.keys.slice(offsets[0], offsets[-1] - offsets[0])
    items = held_column.items.slice(offsets[0], offsets[-1] - offsets[0])
    (first_code, last_code, key_code), strings = string_codes(
        table.column("first"), table.column("last"), keys
    )
    first_row, last_row = first_and_last_index(covered, starts)
    first = np.where(total_us > 0, first_code[first_row], -1)
    last = np.where(total_us > 0, last_code[last_row], -1)
    segment_begins = np.zeros(table.num_rows, dtype=np.int64)
    segment_begins[starts] = 1
    segment_of_row = np.cumsum(segment_begins) - 1
    entry_segment = np.repeat(segment_of_row, np.diff(offsets))
    entry_held_us = np.rint(float_values(items) * 1e6).astype(np.int64)
    positive = entry_held_us > 0
    held = held_by_string(
        entry_segment[positive], key_code[positive], entry_held_us[positive], len(starts)
    )
    count = segment_sums(table.column("count").to_numpy(zero_copy_only=False), starts)
    everything = np.ones(len(starts), dtype=bool)
    return [
        pa.array(total_us / 1e6, type=pa.float64()),
        strings_by_code(strings, first),
        strings_by_code(strings, last),
        strings_by_code(strings, held.mode_code),
        pa.array(count, type=pa.int64()),
        held.to_map(strings, everything),
    ]


def rollup(
    samples_table: pa.Table, to_width: timedelta, offset: timedelta = timedelta(0)
) -> pa.Table:
    """Samples at `to_width` (a multiple of the table's width, aligned) from finer samples.

    A coarse bucket is present iff any of its fine buckets is; the result equals computing
    samples directly at `to_width` (floats up to rounding), and each twa is the exact weighted
    mean of the finer twas.
    """
    is_string = "mode" in samples_table.column_names
    schema = SAMPLES_STR if is_string else SAMPLES
    width_us = width_to_us(to_width, "roll-up width")
    offset_us = offset_to_us(offset, width_us)
    if samples_table.num_rows == 0:
        return schema.empty_table()
    table = in_tag_bucket_order(samples_table)
    tag_id = table.column("tag_id").to_numpy(zero_copy_only=False)
    bucket = time_us(table.column("bucket_start"))
    coarse = offset_us + ((bucket - offset_us) // width_us) * width_us
    starts = segment_starts(tag_id, coarse)
    covered_us = _microseconds(table.column("covered_s"))
    rolled = (
        _rollup_string(table, starts, covered_us)
        if is_string
        else _rollup_numeric(table, starts, covered_us)
    )
    index = pa.array(starts, type=pa.int64())
    return pa.Table.from_arrays(
        [
            table.column("tag_id").take(index).combine_chunks(),
            table.column("tag_name").take(index).combine_chunks(),
            us_to_time(coarse[starts]),
            *rolled,
        ],
        schema=schema,
    )
