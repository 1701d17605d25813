"""Reductions over segments: runs of consecutive rows that share a (tag, bucket).

Samples and roll-ups both reduce rows sorted by (tag, bucket) to one row per segment; the
pieces here (first/last covered row, time held per string and the mode) are the parts
that are not a single numpy ufunc.reduceat call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tagflow.transforms.columns import strings_by_code


def segment_starts(*keys: np.ndarray) -> np.ndarray:
    """Positions where a new segment begins in rows sorted by `keys` (any key changes)."""
    n = len(keys[0])
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    changes = np.zeros(n, dtype=bool)
    changes[0] = True
    for key in keys:
        changes[1:] |= key[1:] != key[:-1]
    return np.flatnonzero(changes)


def segment_ends(starts: np.ndarray, n_rows: int) -> np.ndarray:
    """One past the last row of each segment."""
    return np.append(starts[1:], n_rows)


def segment_sums(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per segment, the exact sum of integer (or bool) `values`.

    Differences of a running sum: exact for integers and cheaper than np.add.reduceat.
    """
    running = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(values, out=running[1:])
    return running[segment_ends(starts, len(values))] - running[starts]


def first_and_last_index(mask: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per segment, the indices of its first and last rows where `mask` (-1 where none).

    A running count of marked rows tells, per segment, which marked rows lie inside it.
    """
    marked = np.flatnonzero(mask)
    if len(marked) == 0:
        none = np.full(len(starts), -1, dtype=np.int64)
        return none, none
    running = np.zeros(len(mask) + 1, dtype=np.int64)
    np.cumsum(mask, out=running[1:])
    before = running[starts]
    through = running[segment_ends(starts, len(mask))]
    has = through > before
    first = np.where(has, marked[np.minimum(before, len(marked) - 1)], -1)
    last = np.where(has, marked[through - 1], -1)
    return first, last


@dataclass(frozen=True)
class HeldStrings:
    """Time held per distinct string in each segment, and the segment's mode.

    Entries of segment i are entry_code/entry_held_us[offsets[i]:offsets[i+1]], codes
    ascending (so keys come out in string order).
    """

    offsets: np.ndarray  # int64, n_segments + 1
    entry_code: np.ndarray  # int64
    entry_held_us: np.ndarray  # int64
    mode_code: np.ndarray  # int64 per segment, -1 where nothing was held

    def to_map(self, strings: pa.Array, keep: np.ndarray) -> pa.MapArray:
        """The held_s column (string → seconds) of the segments where `keep`.

        `strings` is the sorted dictionary the codes index.
        """
        lengths = np.diff(self.offsets)
        kept_entry = np.repeat(keep, lengths)
        offsets = np.zeros(np.count_nonzero(keep) + 1, dtype=np.int32)
        np.cumsum(lengths[keep], out=offsets[1:])
        keys = strings_by_code(strings, self.entry_code[kept_entry])
        seconds = pa.array(self.entry_held_us[kept_entry] / 1e6, type=pa.float64())
        return pa.MapArray.from_arrays(pa.array(offsets, type=pa.int32()), keys, seconds)


def held_by_string(
    segment: np.ndarray, code: np.ndarray, held_us: np.ndarray, n_segments: int
) -> HeldStrings:
    """Sum `held_us` per (segment, code); the mode holds longest, ties to the smallest code.

    `segment` must be non-decreasing; all held_us must be positive.
    """
    if len(segment) == 0:
        return HeldStrings(
            offsets=np.zeros(n_segments + 1, dtype=np.int64),
            entry_code=np.zeros(0, dtype=np.int64),
            entry_held_us=np.zeros(0, dtype=np.int64),
            mode_code=np.full(n_segments, -1, dtype=np.int64),
        )
    n_codes = int(code.max()) + 1
    key = segment.astype(np.int64) * n_codes + code
    if not bool((key[1:] >= key[:-1]).all()):
        order = np.argsort(key, kind="stable")
        key, held_us = key[order], held_us[order]
    group_start = segment_starts(key)
    group_key = key[group_start]
    group_held = np.add.reduceat(held_us, group_start)
    group_segment = group_key // n_codes
    group_code = group_key - group_segment * n_codes
    counts = np.bincount(group_segment, minlength=n_segments)
    offsets = np.zeros(n_segments + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    holding = counts > 0
    first_group = offsets[:-1][holding]
    longest = np.maximum.reduceat(group_held, first_group)
    is_longest = group_held == np.repeat(longest, counts[holding])
    # Codes ascend within a segment, so the first longest group is the smallest string.
    candidate = np.where(is_longest, np.arange(len(group_held)), len(group_held))
    mode_group = np.minimum.reduceat(candidate, first_group)
    mode_code = np.full(n_segments, -1, dtype=np.int64)
    mode_code[holding] = group_code[mode_group]
    return HeldStrings(offsets, group_code, group_held, mode_code)
