"""Splitting a day into chunks of whole tags, so that every stage holds one chunk at a time.

Every semantic of DESIGN §2 is per tag, so a day computed chunk by chunk (in tag-name order)
equals the day computed at once; memory then follows the chunk size, not the day's size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.arrow import TRANSITIONS
from transforms.rollup import rollup
from transforms.samples import samples
from transforms.spans import spans_for_day

# Bounds of one chunk: its rows, and its tags (each tag costs a day of 1-minute buckets in
# the samples stage whatever its row count).
CHUNK_ROWS = 500_000
CHUNK_TAGS = 256


def plan_id_chunks(
    ids_in_name_order: Sequence[int], expected_rows: int, max_rows: int = CHUNK_ROWS
) -> list[list[int]]:
    """Consecutive groups of tag ids (in name order) of about `max_rows` expected rows each,
    the day's `expected_rows` assumed spread evenly over the tags, at most CHUNK_TAGS each."""
    count = len(ids_in_name_order)
    if count == 0:
        return []
    per_tag = max(expected_rows, 1) / count
    size = int(min(CHUNK_TAGS, max(1, max_rows // max(per_tag, 1))))
    ids = list(ids_in_name_order)
    return [ids[start : start + size] for start in range(0, count, size)]


def _run_lengths(names: pa.Array) -> tuple[list[str], np.ndarray]:
    """Distinct names of a sorted string array and the cumulative row count at each one's end."""
    if len(names) == 0:
        return [], np.zeros(0, dtype=np.int64)
    encoded = pc.run_end_encode(names)
    return encoded.values.to_pylist(), encoded.run_ends.to_numpy().astype(np.int64)


def tag_chunks(
    rows: Iterable[pa.RecordBatch | pa.Table],
    schema: pa.Schema,
    carry_in: pa.Table | None = None,
    max_rows: int = CHUNK_ROWS,
    max_tags: int = CHUNK_TAGS,
) -> Iterator[tuple[pa.Table, pa.Table | None]]:
    """Regroup `rows` (of `schema`, sorted by tag_name, streamed in any batch sizes) into
    chunks of whole tags, each paired with the `carry_in` rows (sorted by tag_name) of the
    same name range.

    A chunk is cut after a tag once it holds `max_rows` rows or `max_tags` tags (a tag larger
    than `max_rows` is a chunk alone); tags only in `carry_in` count as tags. The chunks
    partition both inputs. With no rows and no carry-in, nothing is yielded."""
    carry_names = carry_in.column("tag_name").to_pylist() if carry_in is not None else []
    carry_from = 0
    pending = schema.empty_table()
    stream = iter(rows)
    while True:
        batch = next(stream, None)
        if batch is not None:
            pending = pa.concat_tables([pending, pa.table(batch).cast(schema)])
            if not pending.num_rows:
                continue
        names, ends = _run_lengths(pending.column("tag_name").combine_chunks())
        # Until the stream ends, the last buffered tag may go on in the next batch, and so
        # may carry-in tags named after it.
        limit = names[-1] if batch is not None else None
        complete = len(names) - 1 if batch is not None else len(names)
        cuts = []
        row_at = rows_cut = rows_taken = tags = 0
        carry_at = carry_cut = carry_from
        while True:
            row_name = names[row_at] if row_at < complete else None
            carry_name = carry_names[carry_at] if carry_at < len(carry_names) else None
            if carry_name is not None and limit is not None and carry_name >= limit:
                carry_name = None
            if row_name is None and carry_name is None:
                break
            if carry_name is not None and (row_name is None or carry_name <= row_name):
                carry_at += 1
            if row_name is not None and (carry_name is None or row_name <= carry_name):
                rows_taken = int(ends[row_at])
                row_at += 1
            tags += 1
            if (
                rows_taken - rows_cut >= max_rows
                or tags >= max_tags
                or (batch is None and row_at == complete and carry_at == len(carry_names))
            ):
                cuts.append((rows_cut, rows_taken, carry_cut, carry_at))
                rows_cut, carry_cut, tags = rows_taken, carry_at, 0
        for row_lo, row_hi, carry_lo, carry_hi in cuts:
            chunk_carry = (
                None if carry_in is None else carry_in.slice(carry_lo, carry_hi - carry_lo)
            )
            yield pending.slice(row_lo, row_hi - row_lo), chunk_carry
        pending = pending.slice(rows_cut)
        carry_from = carry_cut
        if batch is None:
            return


def spans_by_chunk(
    transitions: Iterable[pa.RecordBatch],
    carry_in: pa.Table,
    day_start: datetime,
    day_end: datetime,
    tags: pa.Table,
    tenant: str,
    **bounds: int,
) -> Iterator[pa.Table]:
    """spans_for_day over a day's stored transitions, one chunk of whole tags at a time."""
    for rows, carry in tag_chunks(transitions, TRANSITIONS, carry_in, **bounds):
        yield spans_for_day(rows, carry, day_start, day_end, tags, tenant)


def samples_by_chunk(
    transitions: Iterable[pa.RecordBatch],
    carry_in: pa.Table,
    day_start: datetime,
    day_end: datetime,
    width: timedelta,
    tags: pa.Table,
    value_kind: str,
    **bounds: int,
) -> Iterator[pa.Table]:
    """The numeric (value_kind 'numeric') or string samples of a day, a chunk at a time.

    Only tags with a row of that kind (in the day or the carry-in) are computed, with all
    their rows: a string row ends a numeric piece, so a mixed tag needs both kinds."""
    for rows, carry in tag_chunks(transitions, TRANSITIONS, carry_in, **bounds):
        names = pa.concat_arrays(
            [
                table.filter(pc.equal(table["value_kind"], value_kind))["tag_name"].combine_chunks()
                for table in (rows, carry)
            ]
        )
        if len(names) == 0:
            continue
        wanted = pc.unique(names)
        rows = rows.filter(pc.is_in(rows["tag_name"], value_set=wanted))
        carry = carry.filter(pc.is_in(carry["tag_name"], value_set=wanted))
        result = samples(rows, carry, day_start, day_end, width, tags)
        yield result.numeric if value_kind == "numeric" else result.string


def rollup_by_chunk(
    finer: Iterable[pa.RecordBatch], schema: pa.Schema, width: timedelta, **bounds: int
) -> Iterator[pa.Table]:
    """rollup over a day's stored finer samples, one chunk of whole tags at a time."""
    for rows, _ in tag_chunks(finer, schema, None, **bounds):
        yield rollup(rows, width)
