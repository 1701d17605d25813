"""Spans of a day: maximal runs of one value of a tag's step function, clipped to the day.

Consecutive pieces of a tag join into one run when the second starts where the first ended
and holds an equal value (NaN equals NaN, NULL equals NULL, 1 differs from "1"). Each run
gets an id that is stable across days and reruns: a hash of (tenant, tag id, raw_begin_at),
kept out of the range reserved for the spans people add (DESIGN §9).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import numpy as np
import pyarrow as pa

from tagflow.schemas.arrow import SPANS
from tagflow.transforms.columns import nullable_float, strings_by_code, us_to_time, window_to_us
from tagflow.transforms.pieces import Pieces, map_tag_chunks
from tagflow.transforms.tag_order import TagOrder

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)

# The ids of spans people add (annotations): the lowest 2^32 signed 64-bit values. A hash that
# lands there has bit 62 flipped, so a person's span can never take a computed span's id.
USER_SPAN_ID_MIN = -(2**63)
USER_SPAN_ID_COUNT = 2**32
_RESERVED_HIGH_BITS = np.uint64(0x8000_0000)  # the top 32 bits of every id in that range
_OUT_OF_RESERVED = np.uint64(1 << 62)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser over a uint64 array (wrap-around arithmetic)."""
    z = x + _GOLDEN
    z ^= z >> np.uint64(30)
    z *= _MIX_1
    z ^= z >> np.uint64(27)
    z *= _MIX_2
    z ^= z >> np.uint64(31)
    return z


def tenant_key(tenant: str) -> int:
    """The tenant's 64-bit hash key (blake2b, 8 bytes, little-endian)."""
    return int.from_bytes(hashlib.blake2b(tenant.encode(), digest_size=8).digest(), "little")


def span_ids(tenant: str, tag_id: np.ndarray, raw_begin_us: np.ndarray) -> np.ndarray:
    """Stable signed 64-bit span ids of (tenant, tag_id, raw_begin_at µs)."""
    tag = np.asarray(tag_id, dtype=np.int64).view(np.uint64)
    begin = np.asarray(raw_begin_us, dtype=np.int64).view(np.uint64)
    mixed = splitmix64(np.uint64(tenant_key(tenant)) ^ splitmix64(tag ^ splitmix64(begin)))
    return outside_user_range(mixed).view(np.int64)


def outside_user_range(hashes: np.ndarray) -> np.ndarray:
    """uint64 hashes with those that would be people's span ids moved out of their range."""
    reserved = (hashes >> np.uint64(32)) == _RESERVED_HIGH_BITS
    return np.where(reserved, hashes ^ _OUT_OF_RESERVED, hashes)


def _same_value_as_next(pieces: Pieces, index: np.ndarray | None) -> np.ndarray:
    """For each piece but the last, whether the next piece holds an equal value.

    Equal: both NULL (from either table), or equal numbers (NaN equals NaN, -0.0 equals 0.0),
    or equal strings. Strings have NaN as number and a code, numbers code -1, so the three
    comparisons below tell the classes apart too.
    """

    def pick(values: np.ndarray) -> np.ndarray:
        return values if index is None else values[index]

    number = pick(pieces.value_double)
    nan = np.isnan(number)
    null = pick(pieces.is_null)
    code = pick(pieces.string_code)
    same = (number[1:] == number[:-1]) | (nan[1:] & nan[:-1])
    same &= code[1:] == code[:-1]
    same &= null[1:] == null[:-1]
    return same


def _spans_of_chunk(
    pieces: Pieces, order: TagOrder, day_start_us: int, day_end_us: int, tenant: str
) -> pa.Table:
    # Zero-length pieces (a row at exactly death_at) hold nothing and join no run.
    positive = pieces.end > pieces.start
    held = None if bool(positive.all()) else np.flatnonzero(positive)
    del positive
    rank, start, end = pieces.rank, pieces.start, pieces.end
    if held is not None:
        rank, start, end = rank[held], start[held], end[held]
    if len(rank) == 0:
        return SPANS.empty_table()
    continues_run = _same_value_as_next(pieces, held)
    continues_run &= rank[1:] == rank[:-1]
    continues_run &= start[1:] == end[:-1]
    first = np.flatnonzero(np.concatenate([[True], ~continues_run]))
    del continues_run
    last = np.append(first[1:] - 1, len(rank) - 1)
    first_piece = first if held is None else held[first]
    raw_begin = pieces.raw_begin(first_piece)
    run_end = end[last]
    begin_at = np.maximum(raw_begin, day_start_us)
    end_at = np.minimum(run_end, day_end_us)
    emit = begin_at < end_at
    if not bool(emit.all()):
        first_piece, run_end, raw_begin = first_piece[emit], run_end[emit], raw_begin[emit]
        begin_at, end_at = begin_at[emit], end_at[emit]
    run_rank = pieces.rank[first_piece]
    tag_id = order.tag_id[run_rank]
    not_number = pieces.is_string[first_piece] | pieces.is_null[first_piece]
    return pa.Table.from_arrays(
        [
            pa.array(span_ids(tenant, tag_id, raw_begin), type=pa.int64()),
            pa.array(tag_id, type=pa.int32()),
            order.names(run_rank),
            nullable_float(pieces.value_double[first_piece], not_number),
            strings_by_code(pieces.strings, pieces.string_code[first_piece]),
            us_to_time(raw_begin),
            us_to_time(run_end, null_mask=run_end >= day_end_us),
            us_to_time(begin_at),
            us_to_time(end_at),
        ],
        schema=SPANS,
    )


def spans_for_day(
    transitions: pa.Table,
    carry_in: pa.Table,
    day_start: datetime,
    day_end: datetime,
    tags: pa.Table | TagOrder,
    tenant: str,
) -> pa.Table:
    """Runs of equal value intersecting [day_start, day_end), as SPANS sorted by
    (tag_name, raw_begin_at).

    raw_begin_at may lie before the day (the carry-in's run_begin_at); raw_end_at is null
    when the run's end (next different value or death) is not before day_end.
    """
    day_start_us, day_end_us = window_to_us(day_start, day_end)
    order = TagOrder.of(tags)
    parts = map_tag_chunks(
        lambda pieces: _spans_of_chunk(pieces, order, day_start_us, day_end_us, tenant),
        transitions,
        carry_in,
        order,
        day_end_us,
    )
    return pa.concat_tables(parts) if parts else SPANS.empty_table()
