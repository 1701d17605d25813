"""The tag directory of a partition file: where each tag's rows lie, kept in the Parquet footer.

Every dataset file is sorted by tag, so a tag's rows are one contiguous run. The writer records
the runs (tag_id, first row) as it writes and cuts row groups at tag boundaries; a reader
asking for a few tags then decodes only the row groups holding them, finds their rows by
arithmetic instead of comparing names, and never decodes the tag_name or tag_id columns. Tags
are found by id, so a renamed tag's history is found under its new name.

The directory is one footer key (JSON, readable by any Parquet tool):
``{"version": 1, "tag_id": [...], "first_row": [...]}`` in file order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

DIRECTORY_KEY = b"tagflow.tag_directory"
_VERSION = 1


class TagRuns:
    """The runs of tags written so far, in file order (tables arrive in file order)."""

    def __init__(self) -> None:
        self._ids: list[np.ndarray] = []
        self._firsts: list[np.ndarray] = []
        self._last_id: int | None = None
        self.rows = 0

    def add(self, tag_ids: np.ndarray) -> None:
        if not len(tag_ids):
            return
        starts = run_starts(tag_ids)
        if self._last_id is not None and tag_ids[0] == self._last_id:
            starts = starts[1:]  # the tag goes on from the previous table
        self._ids.append(tag_ids[starts].astype(np.int32))
        self._firsts.append(starts.astype(np.int64) + self.rows)
        self._last_id = int(tag_ids[-1])
        self.rows += len(tag_ids)

    def encode(self) -> dict[bytes, bytes]:
        ids = np.concatenate(self._ids) if self._ids else np.empty(0, np.int32)
        firsts = np.concatenate(self._firsts) if self._firsts else np.empty(0, np.int64)
        body = {"version": _VERSION, "tag_id": ids.tolist(), "first_row": firsts.tolist()}
        return {DIRECTORY_KEY: json.dumps(body, separators=(",", ":")).encode()}


def run_starts(tag_ids: np.ndarray) -> np.ndarray:
    """Positions where a new tag's run begins (0 first)."""
    changes = np.flatnonzero(tag_ids[1:] != tag_ids[:-1]) + 1
    return np.concatenate([np.zeros(1, np.int64), changes])


def group_ends(tag_ids: np.ndarray, target_rows: int) -> list[int]:
    """Where to end each row group of a table sorted by tag: at the last tag boundary that
    keeps the group within `target_rows`, or after `target_rows` inside a tag larger than that."""
    boundaries = np.append(run_starts(tag_ids)[1:], len(tag_ids))
    ends, start = [], 0
    while start < len(tag_ids):
        at = int(np.searchsorted(boundaries, start + target_rows, side="right")) - 1
        end = int(boundaries[at]) if at >= 0 and boundaries[at] > start else start + target_rows
        end = min(end, len(tag_ids))
        ends.append(end)
        start = end
    return ends


@dataclass(frozen=True)
class TagDirectory:
    """The runs of one file: tag ids sorted, with the first row and row count of each."""

    sorted_ids: np.ndarray
    first_row: np.ndarray
    rows: np.ndarray
    # Row groups' first rows, and the total as a last entry.
    group_starts: np.ndarray

    @classmethod
    def of(cls, key_value: dict[bytes, bytes] | None, group_rows: list[int]) -> TagDirectory | None:
        """The directory in a file's footer metadata; None for a file written without one."""
        raw = (key_value or {}).get(DIRECTORY_KEY)
        if raw is None:
            return None
        body = json.loads(raw)
        if body.get("version") != _VERSION:
            return None
        ids = np.asarray(body["tag_id"], dtype=np.int64)
        firsts = np.asarray(body["first_row"], dtype=np.int64)
        group_starts = np.concatenate([[0], np.cumsum(group_rows, dtype=np.int64)])
        counts = np.diff(np.append(firsts, group_starts[-1]))
        order = np.argsort(ids, kind="stable")
        return cls(ids[order], firsts[order], counts[order], group_starts)

    def runs_of(self, tag_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tag ids found, their first rows, their row counts), in file order."""
        ids = np.unique(np.asarray(tag_ids, dtype=np.int64))
        at = np.minimum(np.searchsorted(self.sorted_ids, ids), len(self.sorted_ids) - 1)
        at = at[self.sorted_ids[at] == ids] if len(self.sorted_ids) else at[:0]
        at = at[np.argsort(self.first_row[at], kind="stable")]
        return self.sorted_ids[at], self.first_row[at], self.rows[at]

    def plan(
        self, firsts: np.ndarray, counts: np.ndarray, allowed: np.ndarray | None = None
    ) -> tuple[list[int], np.ndarray, np.ndarray]:
        """(row groups to read, positions of the runs' rows in those groups read one after
        another, rows of each run kept), for runs in file order; `allowed`, a mask over the
        row groups, leaves out groups known to hold no wanted row (by their statistics).
        Vectorised over (run, group) pairs: a read of every tag has thousands of runs."""
        starts = self.group_starts
        firsts, counts = np.asarray(firsts, np.int64), np.asarray(counts, np.int64)
        first_group = np.searchsorted(starts, firsts, side="right") - 1
        last_group = np.searchsorted(starts, firsts + counts - 1, side="right") - 1
        per_run = last_group - first_group + 1
        run = np.repeat(np.arange(len(firsts)), per_run)
        # Each pair's group: its run's first group plus its place among the run's pairs.
        group = (
            first_group[run]
            + np.arange(len(run))
            - np.repeat(np.cumsum(per_run) - per_run, per_run)
        )
        if allowed is not None:
            keep = allowed[group]
            run, group = run[keep], group[keep]
        low = np.maximum(firsts[run], starts[group])
        high = np.minimum(firsts[run] + counts[run], starts[group + 1])
        length = high - low
        groups = np.unique(group)
        sizes = np.diff(starts)[groups]
        offset = (np.cumsum(sizes) - sizes)[np.searchsorted(groups, group)]
        # Pair k's rows are [low - group start + offset, + length) of the concatenation;
        # pairs come in file order, so the positions rise.
        begin = low - starts[group] + offset
        before = np.cumsum(length) - length
        take = np.repeat(begin - before, length) + np.arange(int(length.sum()))
        kept = np.bincount(run, weights=length, minlength=len(firsts)).astype(np.int64)
        return groups.tolist(), take, kept


def tag_id_column(ids: np.ndarray, counts: np.ndarray) -> pa.Array:
    """The tag_id column of runs read one after another, without decoding it."""
    return pa.array(np.repeat(ids, counts).astype(np.int32), pa.int32())
