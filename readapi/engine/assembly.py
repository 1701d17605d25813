"""Pure Arrow/numpy functions that assemble per-day results into the answer for a range:
aligned decomposition of a range, spans stitched across days, the carry-in at any instant,
the bucket grid, wide sample tables, derivatives and counter rates. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tagflow.readapi.models import SPAN_LIST
from tagflow.readapi.query import AGGREGATES, NUMERIC_ONLY
from tagflow.schemas.arrow import RAW_CARRY_IN, TS
from tagflow.schemas.registry import WIDTHS
from tagflow.transforms.columns import NO_TIME, datetime_to_us, time_us, us_to_time
from tagflow.transforms.transitions import carry_in_for_day

US_PER_S = 1_000_000
# The materialised widths in µs, coarsest first: the order in which summaries are preferred.
_SEGMENT_WIDTHS = tuple(
    (name, width // timedelta(microseconds=1)) for name, width in reversed(WIDTHS.items())
)


def aligned_segments(lo_us: int, hi_us: int) -> dict[str | None, list[tuple[int, int]]]:
    """[lo, hi) cut into the coarsest aligned pieces: whole days, whole hours, whole minutes,
    and (key None) the sub-minute rest, so each piece can be read from the smallest summary."""
    out: dict[str | None, list[tuple[int, int]]] = {}

    def split(lo: int, hi: int, level: int) -> None:
        if lo >= hi:
            return
        if level == len(_SEGMENT_WIDTHS):
            out.setdefault(None, []).append((lo, hi))
            return
        name, width = _SEGMENT_WIDTHS[level]
        inner_lo, inner_hi = -(-lo // width) * width, hi // width * width
        if inner_lo < inner_hi:
            out.setdefault(name, []).append((inner_lo, inner_hi))
            split(lo, inner_lo, level + 1)
            split(inner_hi, hi, level + 1)
        else:
            split(lo, hi, level + 1)

    split(lo_us, hi_us, 0)
    return out


def in_intervals(times_us: np.ndarray, intervals: list[tuple[int, int]]) -> np.ndarray:
    """Mask of times lying in any of the half-open intervals."""
    mask = np.zeros(len(times_us), dtype=bool)
    for lo, hi in intervals:
        mask |= (times_us >= lo) & (times_us < hi)
    return mask


def stitch_spans(day_spans: pa.Table, start_us: int, end_us: int) -> pa.Table:
    """Spans of several days (SPANS rows, each clipped to its day) → one span per run over
    [start, end), newest first (SPAN_LIST).

    A run crossing midnight appears on each day with the same id (same raw_begin_at). Its
    end is the raw_end_at of its last piece; a null there with the last piece ending before
    `end` means the run ended exactly at that midnight (the next day, also read, has no piece
    of it), since a day's spans give raw_end_at null for an end exactly at the day's end.
    """
    begin = time_us(day_spans.column("begin_at"))
    end = time_us(day_spans.column("end_at"))
    rows = np.flatnonzero((begin < end_us) & (end > start_us))
    if len(rows) == 0:
        return SPAN_LIST.empty_table()
    # Row numbers only: the pieces' columns are taken once, for the stitched runs.
    ids = day_spans.column("id").to_numpy()[rows]
    begin, end = begin[rows], end[rows]
    order = None if _one_tag_in_time_order(day_spans, begin) else np.lexsort((begin, ids))
    if order is not None:
        ids = ids[order]
    first = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    last = np.r_[first[1:] - 1, len(ids) - 1]
    head, tail = (first, last) if order is None else (order[first], order[last])
    raw_begin = time_us(day_spans.column("raw_begin_at"))[rows[head]]
    if bool((raw_begin[1:] > raw_begin[:-1]).all()):
        newest_first = np.arange(len(head) - 1, -1, -1)
    else:
        newest_first = np.argsort(-raw_begin, kind="stable")
    head, tail = head[newest_first], tail[newest_first]
    seen_end = end[tail]
    raw_end = time_us(day_spans.column("raw_end_at").take(pa.array(rows[tail])), null_as=NO_TIME)
    raw_end = np.where((raw_end == NO_TIME) & (seen_end < end_us), seen_end, raw_end)
    heads = day_spans.select(["id", "tag_name", "value_double", "value_string", "raw_begin_at"])
    heads = heads.take(pa.array(rows[head]))
    return pa.Table.from_arrays(
        [
            heads.column("id"),
            heads.column("tag_name"),
            heads.column("value_double"),
            heads.column("value_string"),
            us_to_time(np.maximum(begin[head], start_us)),
            us_to_time(np.minimum(seen_end, end_us)),
            heads.column("raw_begin_at"),
            us_to_time(raw_end, null_mask=raw_end >= end_us),
        ],
        schema=SPAN_LIST,
    )


def _one_tag_in_time_order(day_spans: pa.Table, begin: np.ndarray) -> bool:
    """Whether the pieces are one tag's with rising begins (a read of one tag from a month copy,
    or from its days in order): a tag's runs do not overlap, so each run's pieces are then
    together already, oldest run first, and need no sort."""
    if len(begin) and not bool((begin[1:] >= begin[:-1]).all()):
        return False
    low, high = pc.min_max(day_spans.column("tag_id")).values()
    return low == high


def carry_in_at(
    day_carry_in: pa.Table, day_transitions: pa.Table, at: datetime, tags: pa.Table
) -> pa.Table:
    """The carry-in (CARRY_IN) at instant `at` from the carry-in at the start of at's day and
    that day's transitions: per tag alive at `at`, its last row before `at`, decided by the
    same rule the assets use (transforms.carry_in_for_day). run_begin_at is only kept for
    rows that were the day's carry-in; samples do not use it."""
    at_us = datetime_to_us(at, "carry-in instant")
    before = day_transitions.filter(pa.array(time_us(day_transitions.column("time")) < at_us))

    def raw(table: pa.Table, run_begin: pa.Array | pa.ChunkedArray) -> pa.Table:
        return pa.Table.from_arrays(
            [
                table.column("tag_id"),
                table.column("time"),
                table.column("value_double"),
                table.column("value_string"),
                pc.equal(table.column("value_kind"), "string"),
                run_begin,
            ],
            schema=RAW_CARRY_IN,
        )

    rows = pa.concat_tables(
        [
            raw(day_carry_in, day_carry_in.column("run_begin_at")),
            raw(before, pa.nulls(before.num_rows, TS)),
        ]
    )
    return carry_in_for_day(rows, tags, at)


@dataclass(frozen=True)
class BucketGrid:
    """Buckets [first + k·width, first + (k+1)·width), k < count, that meet [start, end)."""

    first_us: int
    width_us: int
    count: int
    start_us: int
    end_us: int

    @classmethod
    def of(cls, start_us: int, end_us: int, width_us: int, offset_us: int) -> BucketGrid:
        first = start_us - (start_us - offset_us) % width_us
        return cls(first, width_us, -(-(end_us - first) // width_us), start_us, end_us)

    def starts_us(self) -> np.ndarray:
        return self.first_us + np.arange(self.count, dtype=np.int64) * self.width_us

    def index_of(self, times_us: np.ndarray) -> np.ndarray:
        return (times_us - self.first_us) // self.width_us

    def seconds_inside(self) -> np.ndarray:
        """Per bucket, the seconds of it inside [start, end) (edge buckets are partial)."""
        starts = self.starts_us()
        inside = np.minimum(starts + self.width_us, self.end_us) - np.maximum(starts, self.start_us)
        return inside / US_PER_S


def materialised_source(width_us: int, offset_us: int, start_us: int, end_us: int) -> str | None:
    """The coarsest materialised width ('1d', '1h', '1m') that the buckets can be rolled up
    from exactly: it divides the width and the offset, and the range starts and ends on its
    edges (partial edge buckets are then sums of whole fine buckets). None: compute exactly
    from transitions."""
    for name, fine in _SEGMENT_WIDTHS:
        if all(value % fine == 0 for value in (width_us, offset_us, start_us, end_us)):
            return name
    return None


def _tag_slices(table: pa.Table) -> dict[str, tuple[int, int]]:
    """tag_name → [lo, hi) rows of a table whose tags are contiguous (in_tag_bucket_order)."""
    if table.num_rows == 0:
        return {}
    ids = table.column("tag_id").to_numpy()
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(ids)]
    names = table.column("tag_name").take(pa.array(starts)).to_pylist()
    return {name: (int(lo), int(hi)) for name, lo, hi in zip(names, starts, ends, strict=True)}


def wide_samples(
    numeric: pa.Table,
    string: pa.Table,
    columns: list[tuple[str, bool]],
    aggregate: str,
    grid: BucketGrid,
) -> pa.Table:
    """`time` + one column per (tag_name, is_string_tag) in `columns`, one row per bucket of
    the grid. Numeric and first/last columns of numeric (and mixed) tags come from numeric
    samples, first/last of string tags from string samples (average/min/max of a string tag
    are null); count is the bucket's transition count (0 where the tag has no bucket).
    Both tables hold each tag's rows together, by bucket (in_tag_bucket_order)."""
    field = AGGREGATES[aggregate]
    numeric_rows, string_rows = _tag_slices(numeric), _tag_slices(string)
    numeric_bucket = time_us(numeric.column("bucket_start"))
    string_bucket = time_us(string.column("bucket_start"))
    arrays: list[pa.Array] = [us_to_time(grid.starts_us())]
    for name, is_string in columns:
        if aggregate == "count":
            counts = np.zeros(grid.count, dtype=np.int64)
            for table, rows, buckets in (
                (numeric, numeric_rows, numeric_bucket),
                (string, string_rows, string_bucket),
            ):
                if name in rows:
                    lo, hi = rows[name]
                    k = grid.index_of(buckets[lo:hi])
                    values = table.column("count").slice(lo, hi - lo).to_numpy()
                    counts[k] = np.maximum(counts[k], values)
            arrays.append(pa.array(counts, type=pa.int64()))
        elif is_string and aggregate not in NUMERIC_ONLY:
            positions = np.full(grid.count, -1, dtype=np.int64)
            if name in string_rows:
                lo, hi = string_rows[name]
                positions[grid.index_of(string_bucket[lo:hi])] = np.arange(lo, hi)
            taken = pa.array(positions, mask=positions < 0, type=pa.int64())
            arrays.append(string.column(field).take(taken).combine_chunks())
        else:
            values = np.full(grid.count, np.nan)
            if name in numeric_rows and not is_string:
                lo, hi = numeric_rows[name]
                column = numeric.column(field).slice(lo, hi - lo)
                values[grid.index_of(numeric_bucket[lo:hi])] = column.to_numpy(zero_copy_only=False)
            arrays.append(pa.array(values, type=pa.float64()))
    return pa.Table.from_arrays(arrays, names=["time", *(name for name, _ in columns)])


def derivative(wide: pa.Table, width_us: int) -> pa.Table:
    """Per tag column, (v[k] − v[k−1]) / width in units per second between consecutive
    buckets; NaN for the first bucket, next to a missing value, and for string columns."""
    arrays: list[pa.Array | pa.ChunkedArray] = [wide.column(0)]
    for index in range(1, wide.num_columns):
        column = wide.column(index)
        rate = np.full(wide.num_rows, np.nan)
        if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
            values = column.to_numpy(zero_copy_only=False).astype(np.float64)
            rate[1:] = np.diff(values) / (width_us / US_PER_S)
        arrays.append(pa.array(rate, type=pa.float64()))
    return pa.Table.from_arrays(arrays, names=wide.column_names)


def counter_rate(
    transitions: pa.Table, carry_in: pa.Table, names: list[str], grid: BucketGrid
) -> pa.Table:
    """Per tag column and bucket, the counter's increase per second inside the range.

    Increases are taken between consecutive finite numbers of the tag (gaps are skipped):
    v − previous when v ≥ previous, else v (a drop is a reset to zero, then a climb to v).
    Each increase is counted in the bucket of the later value's transition; the first value
    (carry-in) only sets the baseline. Buckets before the tag's first known value are NaN.
    `transitions` holds the range's transitions, `carry_in` the carry-in at the range start.
    """
    value_set = pa.array(names, type=pa.string())
    tables = [(carry_in, True), (transitions, False)]
    cols, times, values, from_carry = [], [], [], []
    for table, is_carry in tables:
        col = pc.index_in(table.column("tag_name"), value_set=value_set)
        number = table.column("value_double").to_numpy(zero_copy_only=False)
        numeric = pc.equal(table.column("value_kind"), "numeric").to_numpy(zero_copy_only=False)
        col_np = col.to_numpy(zero_copy_only=False)
        usable = numeric & np.isfinite(number) & ~np.isnan(col_np.astype(np.float64))
        cols.append(col_np[usable].astype(np.int64))
        times.append(time_us(table.column("time"))[usable])
        values.append(number[usable])
        from_carry.append(np.full(int(usable.sum()), is_carry))
    col, time, value, carry = (np.concatenate(parts) for parts in (cols, times, values, from_carry))
    order = np.lexsort((~carry, time, col))
    col, time, value, carry = col[order], time[order], value[order], carry[order]

    increase = np.zeros((len(names), grid.count))
    known_from = np.full(len(names), grid.count, dtype=np.int64)
    if len(col):
        same_tag = col[1:] == col[:-1]
        step = np.where(value[1:] >= value[:-1], value[1:] - value[:-1], value[1:])
        counted = same_tag & ~carry[1:]
        bucket = grid.index_of(time[1:][counted])
        np.add.at(increase, (col[1:][counted], bucket), step[counted])
        head = np.flatnonzero(np.r_[True, ~same_tag])
        first_bucket = np.where(carry[head], 0, grid.index_of(time[head]))
        known_from[col[head]] = np.maximum(first_bucket, 0)
    seconds = grid.seconds_inside()
    arrays: list[pa.Array] = [us_to_time(grid.starts_us())]
    for index in range(len(names)):
        rate = increase[index] / seconds
        rate[: known_from[index]] = np.nan
        arrays.append(pa.array(rate, type=pa.float64()))
    return pa.Table.from_arrays(arrays, names=["time", *names])
