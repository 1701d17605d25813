"""The tags of a tenant in output order: rank = position by tag_name in codepoint order.

Every transform sorts by (rank, time) once; the rank also gives back each row's tag_id,
tag_name and death_at by a numpy gather instead of a join.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tagflow.transforms.columns import NO_TIME, time_us

# A dense id → rank table is used while it stays this small relative to the tag count;
# beyond it (sparse ids) a binary search over the sorted ids does the look-up.
_DENSE_LOOKUP_MAX = 1 << 22


@dataclass(frozen=True)
class TagOrder:
    """Tags sorted by name; arrays are indexed by rank."""

    tag_id: np.ndarray  # int32
    tag_name: pa.Array  # string
    death_us: np.ndarray  # int64, NO_TIME for tags that never died
    _min_id: int
    _rank_by_id: np.ndarray | None  # dense look-up, -1 where no tag
    _sorted_ids: np.ndarray
    _rank_of_sorted_id: np.ndarray
    # Further deaths of derived tags (the tags table's input_deaths, DESIGN §8), as parallel
    # (rank, µs) arrays sorted by rank then time; None when no tag has any.
    more_deaths: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def from_table(cls, tags: pa.Table) -> TagOrder:
        by_name = pc.sort_indices(tags, sort_keys=[("tag_name", "ascending")])
        tags = tags.take(by_name)
        tag_id = tags.column("tag_id").to_numpy().astype(np.int32)
        tag_name = tags.column("tag_name").combine_chunks()
        death_us = time_us(tags.column("death_at"), null_as=NO_TIME)
        id_order = np.argsort(tag_id, kind="stable")
        sorted_ids = tag_id[id_order].astype(np.int64)
        min_id = int(sorted_ids[0]) if len(sorted_ids) else 0
        rank_by_id = None
        if len(sorted_ids):
            span = int(sorted_ids[-1]) - min_id + 1
            if span <= max(_DENSE_LOOKUP_MAX, 8 * len(sorted_ids)):
                rank_by_id = np.full(span, -1, dtype=np.int64)
                rank_by_id[sorted_ids - min_id] = id_order
        more_deaths = _more_deaths(tags) if "input_deaths" in tags.column_names else None
        return cls(
            tag_id, tag_name, death_us, min_id, rank_by_id, sorted_ids, id_order, more_deaths
        )

    @classmethod
    def of(cls, tags: pa.Table | TagOrder) -> TagOrder:
        """`tags` itself if already ordered; a day computed chunk by chunk orders once."""
        return tags if isinstance(tags, TagOrder) else cls.from_table(tags)

    def __len__(self) -> int:
        return len(self.tag_id)

    def ranks_of(self, tag_ids: np.ndarray) -> np.ndarray:
        """Rank (int32) of each tag id; -1 for ids that are not tags (orphans)."""
        ids = np.asarray(tag_ids)
        if len(ids) > 1:
            # Rows usually come in runs of one tag: look up each run once.
            run_head = np.flatnonzero(ids[1:] != ids[:-1]) + 1
            if 4 * len(run_head) < len(ids):
                run_head = np.concatenate([[0], run_head])
                run_length = np.diff(np.append(run_head, len(ids)))
                return np.repeat(self._look_up(ids[run_head]), run_length)
        return self._look_up(ids)

    def _look_up(self, tag_ids: np.ndarray) -> np.ndarray:
        ids = tag_ids.astype(np.int64, copy=False)
        if len(self.tag_id) == 0:
            return np.full(len(ids), -1, dtype=np.int32)
        if self._rank_by_id is not None:
            offset = ids - self._min_id
            inside = (offset >= 0) & (offset < len(self._rank_by_id))
            return np.where(inside, self._rank_by_id[np.where(inside, offset, 0)], -1).astype(
                np.int32
            )
        position = np.searchsorted(self._sorted_ids, ids)
        position_clipped = np.minimum(position, len(self._sorted_ids) - 1)
        found = self._sorted_ids[position_clipped] == ids
        return np.where(found, self._rank_of_sorted_id[position_clipped], -1).astype(np.int32)

    def end_at_more_deaths(
        self, rank: np.ndarray, start: np.ndarray, end: np.ndarray
    ) -> np.ndarray:
        """`end` of pieces (sorted by rank, start; not overlapping) cut at the tags' further
        deaths: a death d with start <= d < end ends its piece at d, as death_at does."""
        if self.more_deaths is None or not len(rank):
            return end
        end = end.copy()
        # Few pairs (a derived tag's inputs' deaths), each ending at most one piece.
        for death_rank, death in zip(*self.more_deaths, strict=True):
            lo, hi = np.searchsorted(rank, [death_rank, death_rank + 1])
            at = lo + int(np.searchsorted(start[lo:hi], death, side="right")) - 1
            if at >= lo and end[at] > death:
                end[at] = death
        return end

    def dead_at(self, rank: np.ndarray, time: np.ndarray, at_us: int) -> np.ndarray:
        """Whether each (tag, last row time) is dead at `at_us` by a further death: one at or
        after the row and at or before `at_us` (a death at 00:00 takes effect at 00:00)."""
        dead = np.zeros(len(rank), dtype=bool)
        if self.more_deaths is None:
            return dead
        for death_rank, death in zip(*self.more_deaths, strict=True):
            if death <= at_us:
                dead |= (rank == death_rank) & (time <= death)
        return dead

    def names(self, rank: np.ndarray) -> pa.Array:
        return self.tag_name.take(pa.array(rank, type=pa.int64()))

    def ids(self, rank: np.ndarray) -> pa.Array:
        return pa.array(self.tag_id[rank], type=pa.int32())


def _more_deaths(tags: pa.Table) -> tuple[np.ndarray, np.ndarray] | None:
    """The (rank, µs) pairs of input_deaths of `tags` (already in rank order), distinct."""
    deaths = tags.column("input_deaths").combine_chunks()
    if deaths.null_count == len(deaths):
        return None
    lengths = deaths.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    if not lengths.sum():
        return None
    rank = np.repeat(np.arange(len(deaths), dtype=np.int64), lengths)
    time = time_us(deaths.flatten(), null_as=NO_TIME)
    keep = time != NO_TIME
    pairs = np.unique(np.stack([rank[keep], time[keep]], axis=1), axis=0)
    return pairs[:, 0].copy(), pairs[:, 1].copy()
