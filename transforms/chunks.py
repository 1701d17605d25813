"""Splitting a day into chunks of whole tags, so that every stage holds one chunk at a time.

Every semantic of DESIGN §2 is per tag, so a day computed chunk by chunk (in tag-name order)
equals the day computed at once; memory then follows the chunk size, not the day's size.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tagflow.schemas.arrow import TRANSITIONS
from tagflow.transforms.rollup import rollup
from tagflow.transforms.samples import samples
from tagflow.transforms.spans import spans_for_day

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
    cutter = _Cutter(carry_names, max_rows, max_tags)
    pending: list[pa.Table] = []
    rows_pending = tags_pending = 0
    # A tag larger than max_rows cannot be cut until it ends: retry at doubling sizes, so
    # that its rows are not re-scanned on every batch.
    rows_to_try = max_rows
    for batch in rows:
        part = pa.table(batch).cast(schema)
        if not part.num_rows:
            continue
        pending.append(part)
        rows_pending += part.num_rows
        # Distinct names of this batch (one may also end the previous one): enough to tell
        # when a cut becomes possible without re-reading what is pending on every batch.
        tags_pending += len(pc.run_end_encode(part.column("tag_name").combine_chunks()).values)
        last_name = part.column("tag_name")[-1].as_py()
        if rows_pending < rows_to_try and tags_pending + cutter.carry_before(last_name) < max_tags:
            continue
        buffered = pa.concat_tables(pending)
        yield from cutter.cut(buffered, carry_in, final=False)
        rest = buffered.slice(cutter.rows_cut)
        pending = [rest] if rest.num_rows else []
        rows_pending = rest.num_rows
        rows_to_try = max(max_rows, 2 * rows_pending)
        tags_pending = len(pc.run_end_encode(rest.column("tag_name").combine_chunks()).values)
    buffered = pa.concat_tables(pending) if pending else schema.empty_table()
    yield from cutter.cut(buffered, carry_in, final=True)


class _Cutter:
    """Finds chunk boundaries in buffered rows (and the carry-in names not yet chunked)."""

    def __init__(self, carry_names: list[str], max_rows: int, max_tags: int) -> None:
        self._carry_names, self._max_rows, self._max_tags = carry_names, max_rows, max_tags
        self._carry_from = 0
        self.rows_cut = 0

    def carry_before(self, name: str) -> int:
        """Carry-in tags not yet chunked that sort before `name`."""
        return bisect.bisect_left(self._carry_names, name, lo=self._carry_from) - self._carry_from

    def cut(
        self, buffered: pa.Table, carry_in: pa.Table | None, final: bool
    ) -> Iterator[tuple[pa.Table, pa.Table | None]]:
        """Yield the chunks complete in `buffered` (all of it if `final`); `rows_cut` is then
        where the unchunked rest of `buffered` begins."""
        names, ends = _run_lengths(buffered.column("tag_name").combine_chunks())
        carry_names = self._carry_names
        # Until the stream ends, the last buffered tag may go on in the next batch, and so
        # may carry-in tags named after it.
        limit = None if final or not names else names[-1]
        complete = len(names) if final else max(len(names) - 1, 0)
        row_at = rows_cut = rows_taken = tags = 0
        carry_at = carry_cut = self._carry_from
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
            last = final and row_at == complete and carry_at == len(carry_names)
            if rows_taken - rows_cut >= self._max_rows or tags >= self._max_tags or last:
                carry = (
                    None if carry_in is None else carry_in.slice(carry_cut, carry_at - carry_cut)
                )
                yield buffered.slice(rows_cut, rows_taken - rows_cut), carry
                rows_cut, carry_cut, tags = rows_taken, carry_at, 0
        self.rows_cut, self._carry_from = rows_cut, carry_cut


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
