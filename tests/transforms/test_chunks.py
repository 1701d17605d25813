"""A day computed chunk by chunk (whole tags, in name order) by the day's compute chain equals
the day computed at once, dataset for dataset and row for row, for every chunk size; and the
chunk plan covers every tag once, in name order."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from tagflow.schemas.registry import DATASETS, DATED
from tagflow.source.day_stream import plan_id_chunks
from tagflow.transforms.day import compute_day
from tagflow.transforms.tag_order import TagOrder
from tests.transforms.builders import DAY, Window, assert_rows_equal, plain_rows, to_dt
from tests.transforms.test_against_reference import DAYS, SETTINGS, TENANT, histories


def test_id_chunks_keep_name_order_and_bound_the_expected_rows():
    ids = np.array([5, 3, 9, 1, 7, 2, 8])
    chunks = plan_id_chunks(ids, expected_rows=700, max_rows=200)  # 100 rows per tag expected
    assert [int(tag) for chunk in chunks for tag in chunk] == ids.tolist()
    assert [len(chunk) for chunk in chunks] == [2, 2, 2, 1]
    assert plan_id_chunks(np.array([], dtype=np.int32), expected_rows=10) == []
    by_tags = plan_id_chunks(ids, expected_rows=0, max_rows=3)
    assert [chunk.tolist() for chunk in by_tags] == [[5, 3, 9], [1, 7, 2], [8]]


def _of_tags(table: pa.Table, ids: np.ndarray) -> pa.Table:
    return table.filter(pc.is_in(table.column("tag_id"), value_set=pa.array(ids, pa.int32())))


@settings(SETTINGS, max_examples=120)
@given(histories(), st.sampled_from(DAYS), st.integers(1, 40))
def test_the_day_chain_chunk_by_chunk_equals_the_whole_day(history, d0, max_rows):
    rows, tags = history
    window = Window(rows, tags, d0, d0 + DAY, TENANT)
    start, end = to_dt(window.start), to_dt(window.end)
    order = TagOrder.of(window.tags_tbl)
    whole = compute_day(window.raw_rows, window.raw_carry_in, order, start, end, TENANT)
    parts: dict[str, list[pa.Table]] = {name: [] for name in DATED}
    counts: Counter[str] = Counter()
    chunks = plan_id_chunks(order.tag_id, window.raw_rows.num_rows, max_rows)
    known = pc.is_in(window.raw_rows.column("tag_id"), value_set=pa.array(order.tag_id))
    orphans = window.raw_rows.filter(pc.invert(known))
    for ids in chunks:
        chunk = compute_day(
            _of_tags(window.raw_rows, ids), _of_tags(window.raw_carry_in, ids), order,
            start, end, TENANT,
        )  # fmt: skip
        counts.update(chunk.counts)
        for name, table in chunk.tables.items():
            parts[name].append(table)
    last = compute_day(orphans, window.raw_carry_in.slice(0, 0), order, start, end, TENANT)
    counts.update(last.counts)
    assert all(table.num_rows == 0 for table in last.tables.values())
    assert counts == whole.counts
    for name in DATED:
        schema = DATASETS[name].schema
        chunked = pa.concat_tables(parts[name]) if parts[name] else schema.empty_table()
        assert_rows_equal(plain_rows(chunked, schema), plain_rows(whole.tables[name], schema))
