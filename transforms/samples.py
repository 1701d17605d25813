"""LOCF resampling: per tag and bucket [b, b+w), aggregates of the step function (DESIGN §2).

Pieces are clipped to the window and split at bucket edges with integer microsecond
arithmetic; each (tag, bucket) is then a contiguous segment of sub-pieces, reduced for all
buckets at once. Numeric aggregates cover the time a finite number holds; string aggregates
the time a non-NULL string holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa

from tagflow.schemas.arrow import SAMPLES, SAMPLES_STR
from tagflow.transforms.columns import (
    nullable_float,
    offset_to_us,
    strings_by_code,
    us_to_time,
    width_to_us,
    window_to_us,
)
from tagflow.transforms.pieces import Pieces, map_tag_chunks
from tagflow.transforms.segments import (
    first_and_last_index,
    held_by_string,
    segment_starts,
    segment_sums,
)
from tagflow.transforms.tag_order import TagOrder
from tagflow.transforms.weighted_mean import weighted_means


@dataclass(frozen=True)
class SamplesResult:
    """Samples of numeric tags (SAMPLES) and of string tags (SAMPLES_STR)."""

    numeric: pa.Table
    string: pa.Table


@dataclass(frozen=True)
class _SubPieces:
    """Pieces clipped to the window and split at bucket edges, grouped by (tag, bucket)."""

    piece: np.ndarray  # index into Pieces
    duration_us: np.ndarray  # int64, 0 only for a transition held for zero time
    segment_start: np.ndarray  # positions where a (tag, bucket) segment begins
    segment_rank: np.ndarray  # int32
    segment_bucket_us: np.ndarray  # int64 bucket start
    segment_count: np.ndarray  # int64 transitions inside the window and the bucket


def _split_at_bucket_edges(
    pieces: Pieces,
    eligible: np.ndarray,
    window_start_us: int,
    window_end_us: int,
    width_us: int,
    offset_us: int,
) -> _SubPieces:
    start = np.maximum(pieces.start, window_start_us)
    end = np.minimum(pieces.end, window_end_us)
    # Transitions inside the window count even when they hold for zero time (at death_at);
    # pieces.start < window end holds for every piece.
    counted = ~pieces.from_carry_in & (pieces.start >= window_start_us)
    held = end > start
    kept = eligible & (held | counted)
    index = None if bool(kept.all()) else np.flatnonzero(kept)
    del kept
    if index is not None:
        start, end, counted, held = start[index], end[index], counted[index], held[index]
    first_bucket = (start - offset_us) // width_us
    last_bucket = np.where(held, (end - 1 - offset_us) // width_us, first_bucket)
    del held
    n_sub = last_bucket - first_bucket + 1
    n_total = int(n_sub.sum())
    if n_total == len(n_sub):
        # No piece crosses a bucket edge: the pieces are the sub-pieces.
        piece = np.arange(len(start)) if index is None else index
        bucket, sub_start, sub_end, sub_counted = first_bucket, start, end, counted
    else:
        # Scatter each piece's bounds into its first and last sub-piece; everything in
        # between is whole buckets, and the bucket number steps by one within a piece.
        first_sub = np.cumsum(n_sub) - n_sub
        step = np.ones(n_total, dtype=np.int64)
        step[first_sub[1:]] = first_bucket[1:] - last_bucket[:-1]
        step[:1] = first_bucket[:1]
        bucket = np.cumsum(step)
        del step
        sub_start = offset_us + bucket * width_us
        sub_end = sub_start + width_us
        sub_start[first_sub] = start
        sub_end[first_sub + n_sub - 1] = end
        sub_counted = np.zeros(n_total, dtype=bool)
        sub_counted[first_sub] = counted
        new_piece = np.zeros(n_total, dtype=np.int64)
        new_piece[first_sub[1:]] = 1
        piece = np.cumsum(new_piece)
        del new_piece, first_sub
        if index is not None:
            piece = index[piece]
    del first_bucket, last_bucket, n_sub
    rank = pieces.rank[piece]
    segment_start = segment_starts(rank, bucket)
    return _SubPieces(
        piece=piece,
        duration_us=sub_end - sub_start,
        segment_start=segment_start,
        segment_rank=rank[segment_start],
        segment_bucket_us=offset_us + bucket[segment_start] * width_us,
        segment_count=segment_sums(sub_counted, segment_start),
    )


def numeric_statistics(
    mean: np.ndarray,
    covered_us: np.ndarray,
    minimum: np.ndarray,
    maximum: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    count: np.ndarray,
) -> list[pa.Array]:
    """The columns of SAMPLES after the tag and the bucket, one row a bucket; a bucket that
    covers no time holds no value, so its statistics are NULL (its count still counts)."""
    empty = covered_us == 0
    return [
        nullable_float(mean, empty),
        pa.array(covered_us / 1e6, type=pa.float64()),
        nullable_float(minimum, empty),
        nullable_float(maximum, empty),
        nullable_float(first, empty),
        nullable_float(last, empty),
        pa.array(count, type=pa.int64()),
    ]


def _numeric_table(pieces: Pieces, sub: _SubPieces, order: TagOrder, keep: np.ndarray) -> pa.Table:
    if not bool(keep.any()):
        return SAMPLES.empty_table()
    starts = sub.segment_start
    value = pieces.value_double[sub.piece]
    covered = np.isfinite(value) & (sub.duration_us > 0)
    covered_duration_us = np.where(covered, sub.duration_us, 0)
    covered_us = segment_sums(covered_duration_us, starts)
    minimum = np.minimum.reduceat(np.where(covered, value, np.inf), starts)
    maximum = np.maximum.reduceat(np.where(covered, value, -np.inf), starts)
    twa = weighted_means(value, covered_duration_us, starts, covered_us, minimum, maximum)
    del covered_duration_us
    first_row, last_row = first_and_last_index(covered, starts)
    first, last = value[first_row], value[last_row]
    del value, covered

    count = sub.segment_count
    if not bool(keep.all()):
        covered_us, count, twa = covered_us[keep], count[keep], twa[keep]
        minimum, maximum, first, last = minimum[keep], maximum[keep], first[keep], last[keep]
    rank = sub.segment_rank[keep]
    # The exact mean lies in [min, max]; its rounding must not push it out.
    # Adding 0.0 turns a -0.0 mean (all values -0.0) into 0.0, as a sum starting at 0 gives.
    twa = np.clip(twa, minimum, maximum) + 0.0
    return pa.Table.from_arrays(
        [
            order.ids(rank),
            order.names(rank),
            us_to_time(sub.segment_bucket_us[keep]),
            *numeric_statistics(twa, covered_us, minimum, maximum, first, last, count),
        ],
        schema=SAMPLES,
    )


def _string_table(pieces: Pieces, sub: _SubPieces, order: TagOrder, keep: np.ndarray) -> pa.Table:
    if not bool(keep.any()):
        return SAMPLES_STR.empty_table()
    starts = sub.segment_start
    code = pieces.string_code[sub.piece]
    covered = (code >= 0) & (sub.duration_us > 0)
    covered_us = segment_sums(np.where(covered, sub.duration_us, 0), starts)
    # first_and_last_index gives -1 for buckets without covered time, and code[-1] is
    # then masked by the covered_us > 0 test.
    first_row, last_row = first_and_last_index(covered, starts)
    first = np.where(covered_us > 0, code[first_row], -1)
    last = np.where(covered_us > 0, code[last_row], -1)
    segment_begins = np.zeros(len(code), dtype=np.int64)
    segment_begins[starts] = 1
    segment_of_sub = np.cumsum(segment_begins) - 1
    del segment_begins
    held_rows = np.flatnonzero(covered & keep[segment_of_sub])
    held = held_by_string(
        segment_of_sub[held_rows], code[held_rows], sub.duration_us[held_rows], len(starts)
    )
    rank = sub.segment_rank[keep]
    return pa.Table.from_arrays(
        [
            order.ids(rank),
            order.names(rank),
            us_to_time(sub.segment_bucket_us[keep]),
            pa.array(covered_us[keep] / 1e6, type=pa.float64()),
            strings_by_code(pieces.strings, first[keep]),
            strings_by_code(pieces.strings, last[keep]),
            strings_by_code(pieces.strings, held.mode_code[keep]),
            pa.array(sub.segment_count[keep], type=pa.int64()),
            held.to_map(pieces.strings, keep),
        ],
        schema=SAMPLES_STR,
    )


def _samples_of_chunk(
    pieces: Pieces,
    order: TagOrder,
    window_start_us: int,
    window_end_us: int,
    width_us: int,
    offset_us: int,
) -> tuple[pa.Table, pa.Table]:
    in_window = pieces.from_carry_in | (pieces.start >= window_start_us)
    numeric_tag = np.zeros(len(order), dtype=bool)
    numeric_tag[pieces.rank[in_window & ~pieces.is_string]] = True
    string_tag = np.zeros(len(order), dtype=bool)
    string_tag[pieces.rank[in_window & pieces.is_string]] = True
    del in_window

    eligible = (numeric_tag | string_tag)[pieces.rank]
    sub = _split_at_bucket_edges(
        pieces, eligible, window_start_us, window_end_us, width_us, offset_us
    )
    del eligible
    if len(sub.segment_start) == 0:
        return SAMPLES.empty_table(), SAMPLES_STR.empty_table()
    numeric = _numeric_table(pieces, sub, order, numeric_tag[sub.segment_rank])
    string = _string_table(pieces, sub, order, string_tag[sub.segment_rank])
    return numeric, string


def samples(
    transitions: pa.Table,
    carry_in: pa.Table,
    window_start: datetime,
    window_end: datetime,
    width: timedelta,
    tags: pa.Table | TagOrder,
    offset: timedelta = timedelta(0),
) -> SamplesResult:
    """Samples of every tag over [window_start, window_end) in buckets of `width`.

    Buckets are [b, b+width) with b ≡ offset (mod width) since the epoch; only their part
    inside the window is aggregated, and bucket_start is b itself. Numeric samples hold the
    tags whose carry-in or a transition in the window is numeric; string samples likewise.
    """
    window_start_us, window_end_us = window_to_us(window_start, window_end)
    width_us = width_to_us(width, "bucket width")
    offset_us = offset_to_us(offset, width_us)
    order = TagOrder.of(tags)
    buckets_per_tag = (
        (window_end_us - 1 - offset_us) // width_us - (window_start_us - offset_us) // width_us + 1
    )
    parts = map_tag_chunks(
        lambda pieces: _samples_of_chunk(
            pieces, order, window_start_us, window_end_us, width_us, offset_us
        ),
        transitions,
        carry_in,
        order,
        window_end_us,
        rows_per_tag=buckets_per_tag,
    )
    if not parts:
        return SamplesResult(SAMPLES.empty_table(), SAMPLES_STR.empty_table())
    return SamplesResult(
        numeric=pa.concat_tables([numeric for numeric, _ in parts]),
        string=pa.concat_tables([string for _, string in parts]),
    )
