"""Constant pieces of every tag's step function over a window, shared by spans and samples.

Each transition, and the carry-in before the window, holds its value on [start, end): end is
the tag's next row, or death_at when death falls in between (a row at exactly death_at holds
for zero time). The pieces of all tags sit in one set of numpy arrays sorted by
(tag rank, start), so every later step is a vectorised pass or a segment reduction.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pyarrow as pa

from tagflow.chunk_sizes import WORK_PER_CHUNK
from tagflow.transforms.columns import (
    NO_TIME,
    equals_string,
    float_values,
    is_null,
    packed_order,
    string_codes,
    time_us,
)
from tagflow.transforms.tag_order import TagOrder

WORKERS = max(1, min(4, os.cpu_count() or 1))

ChunkResult = TypeVar("ChunkResult")


@dataclass(frozen=True)
class Pieces:
    """Pieces of all tags sorted by (rank, start); arrays are parallel, one entry per piece."""

    rank: np.ndarray  # int32, the tag's position in TagOrder
    start: np.ndarray  # int64 µs: the row's time
    end: np.ndarray  # int64 µs: next row, or death_at in between; NO_TIME if neither
    from_carry_in: np.ndarray  # bool: the piece is the carry-in row (not a transition)
    is_string: np.ndarray  # bool: the row came from tag_data_str
    is_null: np.ndarray  # bool: the value is NULL (from either table)
    value_double: np.ndarray  # float64, the numeric value (NaN where null or a string)
    string_code: np.ndarray  # int32 code into `strings`, -1 where null or numeric
    strings: pa.Array  # the distinct strings in codepoint order
    carry_in_run_begin: np.ndarray  # int64 by rank: the carry-in's run_begin_at

    def __len__(self) -> int:
        return len(self.start)

    def raw_begin(self, index: np.ndarray) -> np.ndarray:
        """Start of the run that piece `index` begins: the carry-in's run_begin_at for it."""
        return np.where(
            self.from_carry_in[index],
            self.carry_in_run_begin[self.rank[index]],
            self.start[index],
        )


@dataclass(frozen=True)
class _Rows:
    rank: np.ndarray
    time: np.ndarray
    is_string: np.ndarray
    is_null: np.ndarray
    value_double: np.ndarray
    string_code: np.ndarray

    def take(self, index: np.ndarray | slice) -> _Rows:
        return _Rows(*(getattr(self, name)[index] for name in _Rows.__dataclass_fields__))


def _rows(
    table: pa.Table, order: TagOrder, codes: np.ndarray, before_us: int
) -> tuple[_Rows, np.ndarray | None]:
    """The rows of known tags before `before_us`, and which table rows they are (None: all)."""
    rank = order.ranks_of(table.column("tag_id").to_numpy(zero_copy_only=False))
    time = time_us(table.column("time"))
    is_string = equals_string(table.column("value_kind"), "string")
    value_double = float_values(table.column("value_double"))
    string_code = np.where(is_string, codes, -1).astype(np.int32)
    null = np.where(is_string, string_code < 0, is_null(table.column("value_double")))
    # Numbers only where the row is numeric and not NULL, so isfinite() alone says "covered".
    value_double = np.where(is_string | null, np.nan, value_double)
    rows = _Rows(rank.astype(np.int32), time, is_string, null, value_double, string_code)
    # Rows of unknown tags carry no meaning here; rows at or after the window end cannot
    # change anything inside it (a run's end beyond the window is reported as unknown).
    keep = (rank >= 0) & (time < before_us)
    return (rows, None) if bool(keep.all()) else (rows.take(keep), keep)


def _merge_order(carry: _Rows, trans: _Rows) -> np.ndarray | None:
    """Order of concat(carry, trans) by (rank, time), carry-in first on equal keys."""
    rank = np.concatenate([carry.rank, trans.rank])
    time = np.concatenate([carry.time, trans.time])
    n_carry = len(carry.rank)
    if n_carry == 0 or len(trans.rank) == 0:
        return packed_order(rank, time)
    t_min = int(time.min())
    t_bits = int(time.max() - t_min).bit_length()
    r_bits = int(rank.max()).bit_length()
    if t_bits + r_bits > 62:
        return packed_order(rank, time)
    key = (rank.astype(np.int64) << t_bits) | (time - t_min)
    carry_key, trans_key = key[:n_carry], key[n_carry:]
    if not (
        bool((carry_key[1:] >= carry_key[:-1]).all())
        and bool((trans_key[1:] >= trans_key[:-1]).all())
    ):
        return np.argsort(key, kind="stable")
    # Both parts sorted (the usual case): a merge by binary search instead of a sort.
    insert_at = np.searchsorted(trans_key, carry_key, side="left")
    return np.insert(np.arange(n_carry, len(key), dtype=np.int64), insert_at, np.arange(n_carry))


def pieces_for_window(
    transitions: pa.Table,
    carry_in: pa.Table,
    order: TagOrder,
    window_end_us: int,
) -> Pieces:
    """Pieces of every tag from its carry-in and transitions before `window_end_us`.

    Pieces may start before the window (the carry-in, or transitions the table holds from
    before it); callers clip to their window.
    """
    (carry_codes, trans_codes), strings = string_codes(
        carry_in.column("value_string"), transitions.column("value_string")
    )
    carry, carry_kept = _rows(carry_in, order, carry_codes, window_end_us)
    trans, _ = _rows(transitions, order, trans_codes, window_end_us)
    carry_in_run_begin = np.full(len(order), NO_TIME, dtype=np.int64)
    if len(carry.rank):
        run_begin = time_us(carry_in.column("run_begin_at"), null_as=NO_TIME)
        if carry_kept is not None:
            run_begin = run_begin[carry_kept]
        # A missing run_begin_at means the run began at the carry-in row itself.
        carry_in_run_begin[carry.rank] = np.where(run_begin == NO_TIME, carry.time, run_begin)

    merge = _merge_order(carry, trans)
    n_carry = len(carry.rank)
    merged = _Rows(
        *(
            np.concatenate([getattr(carry, name), getattr(trans, name)])
            for name in _Rows.__dataclass_fields__
        )
    )
    from_carry_in = np.zeros(len(merged.rank), dtype=bool)
    from_carry_in[:n_carry] = True
    if merge is not None:
        merged = merged.take(merge)
        from_carry_in = from_carry_in[merge]

    rank, start = merged.rank, merged.time
    same_instant = (rank[1:] == rank[:-1]) & (start[1:] == start[:-1])
    if same_instant.any():
        # A transition at the carry-in's own instant supersedes the carry-in (carry-in sorts first).
        drop = np.zeros(len(rank), dtype=bool)
        drop[:-1] = same_instant & from_carry_in[:-1]
        if drop.any():
            merged = merged.take(~drop)
            from_carry_in = from_carry_in[~drop]
            rank, start = merged.rank, merged.time

    next_start = np.empty_like(start)
    next_start[:-1] = start[1:]
    next_start[-1:] = NO_TIME
    next_start[:-1][rank[1:] != rank[:-1]] = NO_TIME
    death = order.death_us[rank]
    end = np.where((start <= death) & (death < next_start), death, next_start)
    end = order.end_at_more_deaths(rank, start, end)
    return Pieces(
        rank=rank,
        start=start,
        end=end,
        from_carry_in=from_carry_in,
        is_string=merged.is_string,
        is_null=merged.is_null,
        value_double=merged.value_double,
        string_code=merged.string_code,
        strings=strings,
        carry_in_run_begin=carry_in_run_begin,
    )


def _in_rank_order(table: pa.Table, order: TagOrder) -> tuple[pa.Table, np.ndarray]:
    """The rows of known tags grouped by rank (ascending), and their ranks."""
    rank = order.ranks_of(table.column("tag_id").to_numpy(zero_copy_only=False))
    known = rank >= 0
    if not bool(known.all()):
        table = table.filter(pa.array(known))
        rank = rank[known]
    if not bool((rank[1:] >= rank[:-1]).all()):
        by_rank = np.argsort(rank, kind="stable")
        table = table.take(pa.array(by_rank))
        rank = rank[by_rank]
    return table, rank


def map_tag_chunks(
    work: Callable[[Pieces], ChunkResult],
    transitions: pa.Table,
    carry_in: pa.Table,
    order: TagOrder,
    window_end_us: int,
    rows_per_tag: int = 0,
    rows_per_chunk: int | None = None,
) -> list[ChunkResult]:
    """`work` applied to the pieces of consecutive ranges of tags, results in tag order.

    A chunk holds about `rows_per_chunk` rows of work: each transition counts one, and each
    tag with any row `rows_per_tag` more (samples pass the buckets per tag, which is what
    their temporaries grow with). The rows of one tag never straddle two chunks, so each
    chunk's output is exactly the slice of the whole output for its tags.
    """
    rows_per_chunk = rows_per_chunk or WORK_PER_CHUNK
    transitions, transition_rank = _in_rank_order(transitions, order)
    carry_in, carry_rank = _in_rank_order(carry_in, order)
    rows_of_tag = np.bincount(transition_rank, minlength=len(order)).astype(np.int64)
    has_rows = rows_of_tag > 0
    has_rows[carry_rank] = True
    rows_of_tag += np.where(has_rows, rows_per_tag, 0)
    work_before = np.cumsum(rows_of_tag)
    cuts = np.searchsorted(
        work_before, np.arange(rows_per_chunk, int(work_before[-1:].sum()), rows_per_chunk)
    )
    rank_edges = np.unique(np.concatenate([[0], cuts + 1, [len(order)]]).clip(0, len(order)))
    transition_edges = np.searchsorted(transition_rank, rank_edges)
    carry_edges = np.searchsorted(carry_rank, rank_edges)

    def run(chunk: int) -> ChunkResult:
        pieces = pieces_for_window(
            transitions.slice(
                transition_edges[chunk], transition_edges[chunk + 1] - transition_edges[chunk]
            ),
            carry_in.slice(carry_edges[chunk], carry_edges[chunk + 1] - carry_edges[chunk]),
            order,
            window_end_us,
        )
        return work(pieces)

    chunks = range(len(rank_edges) - 1)
    if WORKERS == 1 or len(chunks) <= 1:
        return [run(chunk) for chunk in chunks]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return list(pool.map(run, chunks))
