"""A day computed chunk by chunk (whole tags, in name order) equals the day computed at once,
for every chunk size; and the chunking itself partitions its inputs into whole tags."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from tagflow.schemas import arrow as S
from tagflow.transforms.chunks import (
    plan_id_chunks,
    rollup_by_chunk,
    samples_by_chunk,
    spans_by_chunk,
    tag_chunks,
)
from tests.transforms.builders import (
    DAY,
    HOUR,
    MINUTE,
    Window,
    assert_rows_equal,
    plain_rows,
    to_dt,
)
from tests.transforms.test_against_reference import DAYS, SETTINGS, TENANT, histories

ROWS = pa.schema([("tag_name", pa.string()), ("v", pa.int64())])
CARRY = pa.schema([("tag_name", pa.string()), ("c", pa.int64())])
NAMES = [f"t{k:02d}" for k in range(30)] + ["é", "Z"]


@st.composite
def sorted_streams(draw):
    """(batches of sorted rows, the whole table, a sorted carry-in or None)."""
    names = sorted(draw(st.sets(st.sampled_from(NAMES), max_size=12)))
    rows = [(name, n) for name in names for n in range(draw(st.integers(1, 7)))]
    table = pa.Table.from_pylist([{"tag_name": t, "v": v} for t, v in rows], schema=ROWS)
    cuts = sorted(draw(st.lists(st.integers(0, len(rows)), max_size=6)))
    edges = [0, *cuts, len(rows)]
    batches = [table.slice(lo, hi - lo) for lo, hi in zip(edges, edges[1:], strict=False)]
    carry_names = sorted(draw(st.sets(st.sampled_from(NAMES), max_size=10)))
    carry = pa.Table.from_pylist([{"tag_name": t, "c": 1} for t in carry_names], schema=CARRY)
    return batches, table, draw(st.one_of(st.none(), st.just(carry)))


@settings(deadline=None, max_examples=400)
@given(sorted_streams(), st.integers(1, 12), st.integers(1, 5))
def test_tag_chunks_partition_rows_and_carry_in_into_whole_tags_in_order(
    stream, max_rows, max_tags
):
    batches, table, carry = stream
    chunks = list(tag_chunks(batches, ROWS, carry, max_rows=max_rows, max_tags=max_tags))
    rows_out = pa.concat_tables([rows for rows, _ in chunks]) if chunks else ROWS.empty_table()
    assert rows_out.to_pylist() == table.to_pylist()
    if carry is not None:
        carry_out = [r for _, c in chunks for r in c.to_pylist()]
        assert carry_out == carry.to_pylist()
    previous = ""
    for rows, chunk_carry in chunks:
        names = set(rows["tag_name"].to_pylist())
        if chunk_carry is not None:
            names |= set(chunk_carry["tag_name"].to_pylist())
        assert names, "an empty chunk"
        assert min(names) > previous, "a tag split over two chunks, or chunks out of order"
        previous = max(names)
        assert len(names) <= max_tags
        # Cut as soon as the bound is reached: only the last tag may take it past max_rows.
        last = (
            rows.filter(pa.compute.equal(rows["tag_name"], rows["tag_name"][-1])) if rows else rows
        )
        assert rows.num_rows - last.num_rows < max_rows


def test_no_rows_and_no_carry_in_give_no_chunk():
    assert list(tag_chunks([], ROWS, CARRY.empty_table())) == []


def test_id_chunks_keep_name_order_and_bound_the_expected_rows():
    ids = [5, 3, 9, 1, 7, 2, 8]
    chunks = plan_id_chunks(ids, expected_rows=700, max_rows=200)  # 100 rows per tag expected
    assert [tag for chunk in chunks for tag in chunk] == ids
    assert [len(chunk) for chunk in chunks] == [2, 2, 2, 1]
    assert plan_id_chunks([], expected_rows=10) == []
    assert plan_id_chunks(ids, expected_rows=0, max_rows=3) == [[5, 3, 9], [1, 7, 2], [8]]


def _whole_and_chunked(window: Window, max_rows: int, max_tags: int):
    bounds = {"max_rows": max_rows, "max_tags": max_tags}
    start, end = to_dt(window.start), to_dt(window.end)
    batches = window.transitions.to_batches(max_chunksize=3)
    return start, end, batches, bounds


def assert_same(got: pa.Table, expected: pa.Table, schema: pa.Schema) -> None:
    """Equal row for row (NaN equal to NaN), in the same order."""
    assert_rows_equal(plain_rows(got, schema), plain_rows(expected, schema))


def _concat(parts, schema: pa.Schema) -> pa.Table:
    tables = list(parts)
    return pa.concat_tables(tables) if tables else schema.empty_table()


@settings(SETTINGS, max_examples=120)
@given(histories(), st.sampled_from(DAYS), st.integers(1, 6), st.integers(1, 3))
def test_chunked_spans_and_samples_equal_the_whole_day(history, d0, max_rows, max_tags):
    rows, tags = history
    window = Window(rows, tags, d0, d0 + DAY, TENANT)
    start, end, batches, bounds = _whole_and_chunked(window, max_rows, max_tags)
    spans = _concat(
        spans_by_chunk(batches, window.carry_in, start, end, window.tags_tbl, TENANT, **bounds),
        S.SPANS,
    )
    assert_same(spans, window.spans(), S.SPANS)
    whole = window.samples(MINUTE)
    for kind, expected, schema in (
        ("numeric", whole.numeric, S.SAMPLES),
        ("string", whole.string, S.SAMPLES_STR),
    ):
        chunked = samples_by_chunk(
            batches,
            window.carry_in,
            start,
            end,
            to_dt(MINUTE) - to_dt(0),
            window.tags_tbl,
            kind,
            **bounds,
        )
        got = _concat(chunked, schema)
        assert_same(got, expected, schema)
        rolled = _concat(
            rollup_by_chunk(got.to_batches(max_chunksize=50), schema, to_dt(HOUR) - to_dt(0)),
            schema,
        )
        whole_rolled = window.samples(HOUR)
        expected_rolled = whole_rolled.numeric if kind == "numeric" else whole_rolled.string
        assert_same(rolled, expected_rolled, schema)
