"""Raw source rows → a day's transitions, and the raw carry-in → the carry-in of a day.

A tag's transitions are its rows of tag_data and tag_data_str merged by time, one per
instant (DESIGN §2): a tag_data_str row wins over tag_data rows, then the greatest value in
PostgreSQL's order (NaN above every number, NULL lowest). Rows of unknown tags are skipped.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tagflow.schemas.arrow import CARRY_IN, TRANSITIONS
from tagflow.transforms.columns import (
    NO_TIME,
    bool_values,
    datetime_to_us,
    float_values,
    is_null,
    packed_order,
    string_codes,
    time_us,
    us_to_time,
)
from tagflow.transforms.tag_order import TagOrder

_KIND_NAMES = pa.array(["numeric", "string"], type=pa.string())


def _kind_column(is_string: np.ndarray) -> pa.Array:
    return _KIND_NAMES.take(pa.array(is_string.astype(np.int8)))


def _values_of_own_table(kept: pa.Table, is_string: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """value_double and value_string, each null on rows of the other table.

    A tag_data row has no string and a tag_data_str row no number; the source guarantees it,
    this makes it hold for hand-built inputs too.
    """
    value_double = kept.column("value_double").combine_chunks()
    value_string = kept.column("value_string").combine_chunks()
    if bool((is_string & ~is_null(value_double)).any()):
        value_double = pc.if_else(pa.array(is_string), pa.scalar(None, pa.float64()), value_double)
    if bool((~is_string & ~is_null(value_string)).any()):
        value_string = pc.if_else(pa.array(is_string), value_string, pa.scalar(None, pa.string()))
    return value_double, value_string


def _transition_columns(
    kept: pa.Table, order: TagOrder, rank: np.ndarray, time: np.ndarray
) -> list[pa.Array]:
    """The columns TRANSITIONS and CARRY_IN share (tag, instant, value, kind) of the `kept`
    rows, those of tag `rank` at `time`."""
    is_string = bool_values(kept.column("is_string"))
    value_double, value_string = _values_of_own_table(kept, is_string)
    return [
        order.ids(rank),
        order.names(rank),
        us_to_time(time),
        value_double,
        value_string,
        _kind_column(is_string),
    ]


def _winners_of_same_instant(
    rows: pa.Table, positions: np.ndarray, group: np.ndarray
) -> np.ndarray:
    """Of rows at one (tag, instant), the position of the row to keep, one per group.

    `positions` index `rows` and are grouped by `group` (consecutive equal values); only rows
    that share their instant with another row come here, so this runs on few rows.
    """
    subset = rows.take(pa.array(positions))
    from_str = bool_values(subset.column("is_string"))
    values = float_values(subset.column("value_double"))
    double_null = is_null(subset.column("value_double"))
    (codes,), _ = string_codes(subset.column("value_string"))
    value_null = np.where(from_str, codes < 0, double_null)
    numeric = ~from_str & ~value_null
    nan = numeric & np.isnan(values)
    finite_or_inf = np.where(numeric & ~nan, values, 0.0)
    # -0.0 and 0.0 are equal to PostgreSQL; prefer 0.0 so the choice does not depend on row order.
    positive_sign = numeric & ~np.signbit(finite_or_inf)
    string_code = np.where(from_str, codes, -1)
    # lexsort: last key is most significant; the winner sorts last within its group.
    order = np.lexsort(
        (positive_sign, finite_or_inf, nan, string_code, ~value_null, from_str, group)
    )
    sorted_group = group[order]
    last_of_group = np.append(sorted_group[1:] != sorted_group[:-1], True)
    return positions[order[last_of_group]]


def _resolve(
    rows: pa.Table, order: TagOrder
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """(row positions kept in (rank, time) order, their rank, their time, orphans, duplicates)."""
    rank = order.ranks_of(rows.column("tag_id").to_numpy(zero_copy_only=False))
    time = time_us(rows.column("time"))
    orphans = int(np.count_nonzero(rank < 0))
    if orphans:
        # Orphans get the rank after the last tag, so the one sort moves them to the end,
        # where they are cut off without a separate filtering pass.
        rank = np.where(rank < 0, len(order), rank)
    positions = np.arange(len(rank), dtype=np.int64)
    sort = packed_order(rank, time)
    if sort is not None:
        positions, rank, time = positions[sort], rank[sort], time[sort]
    if orphans:
        known = len(rank) - orphans
        positions, rank, time = positions[:known], rank[:known], time[:known]
    same_instant = (rank[1:] == rank[:-1]) & (time[1:] == time[:-1])
    duplicates = int(np.count_nonzero(same_instant))
    if duplicates:
        # Rows in a group of equal (rank, time): each row equal to its predecessor, plus the
        # first row of each such group.
        in_group = np.zeros(len(rank), dtype=bool)
        in_group[1:] = same_instant
        in_group[:-1] |= same_instant
        group_start = np.ones(len(rank), dtype=bool)
        group_start[1:] = ~same_instant
        group = np.cumsum(group_start)[in_group]
        candidates = np.flatnonzero(in_group)
        winners = _winners_of_same_instant(rows, positions[candidates], group)
        keep = ~in_group
        keep[candidates] = np.isin(positions[candidates], winners)
        positions, rank, time = positions[keep], rank[keep], time[keep]
    return positions, rank, time, orphans, duplicates


def resolve_rows(raw_rows: pa.Table, tags: pa.Table | TagOrder) -> tuple[pa.Table, dict[str, int]]:
    """The day's transitions (TRANSITIONS, sorted by tag_name, time) and resolution counts.

    Stats: rows_in (all raw rows), duplicates_dropped (rows losing to another row of the same
    tag and instant), orphans_skipped (rows whose tag_id is not in `tags`).
    """
    order = TagOrder.of(tags)
    positions, rank, time, orphans, duplicates = _resolve(raw_rows, order)
    kept = raw_rows.select(["value_double", "value_string", "is_string"]).take(pa.array(positions))
    table = pa.Table.from_arrays(_transition_columns(kept, order, rank, time), schema=TRANSITIONS)
    stats = {
        "rows_in": raw_rows.num_rows,
        "duplicates_dropped": duplicates,
        "orphans_skipped": orphans,
    }
    return table, stats


def carry_in_for_day(
    raw_carry_in: pa.Table, tags: pa.Table | TagOrder, day_start: datetime
) -> pa.Table:
    """The carry-in of the day starting at `day_start` (CARRY_IN, sorted by tag_name).

    Keeps, per tag alive at day_start, its last row before day_start: death_at is null,
    before the row (reborn) or after day_start. A death exactly at day_start takes effect at
    00:00, so nothing is carried in. Rows of unknown tags are dropped.
    """
    start_us = datetime_to_us(day_start, "day_start")
    order = TagOrder.of(tags)
    rows = raw_carry_in.filter(
        pa.array(time_us(raw_carry_in.column("time")) < start_us, type=pa.bool_())
    )
    positions, rank, time, _, _ = _resolve(rows, order)
    # Should the source send several rows of a tag, the latest one is the carry-in.
    if len(rank):
        last_of_tag = np.append(rank[1:] != rank[:-1], True)
        positions, rank, time = positions[last_of_tag], rank[last_of_tag], time[last_of_tag]
    death = order.death_us[rank]
    alive = (death == NO_TIME) | (death < time) | (death > start_us)
    alive &= ~order.dead_at(rank, time, start_us)
    positions, rank, time = positions[alive], rank[alive], time[alive]
    kept = rows.select(["value_double", "value_string", "is_string", "run_begin_at"]).take(
        pa.array(positions, type=pa.int64())
    )
    return pa.Table.from_arrays(
        [
            *_transition_columns(kept, order, rank, time),
            kept.column("run_begin_at").combine_chunks(),
        ],
        schema=CARRY_IN,
    )
