"""in_tag_bucket_order: what the roll-up and the wide table need (each tag's rows together, by
bucket), by sorting only a table that is not so already."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from tagflow.transforms.rollup import in_tag_bucket_order

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def table_of(rows: list[tuple[int, int]]) -> pa.Table:
    return pa.table(
        {
            "tag_id": pa.array([tag for tag, _ in rows], pa.int32()),
            "bucket_start": pa.array(
                [T0.timestamp() * 1e6 + minute * 60e6 for _, minute in rows], pa.int64()
            ).cast(pa.timestamp("us", tz="UTC")),
            "row": pa.array(range(len(rows)), pa.int64()),
        }
    )


def in_order(table: pa.Table) -> bool:
    tags = table.column("tag_id").to_pylist()
    buckets = table.column("bucket_start").to_pylist()
    runs = [tag for i, tag in enumerate(tags) if i == 0 or tag != tags[i - 1]]
    rising = all(buckets[i] > buckets[i - 1] for i in range(1, len(tags)) if tags[i] == tags[i - 1])
    return len(runs) == len(set(runs)) and rising


# Distinct (tag, minute) pairs, as samples hold, in any order.
rows_of_tags = st.lists(
    st.tuples(st.integers(-3, 5), st.integers(0, 30)), unique=True, max_size=40
).flatmap(st.permutations)


@given(rows_of_tags)
def test_any_table_comes_back_each_tag_together_by_bucket_with_every_row(rows):
    table = table_of(rows)
    ordered = in_tag_bucket_order(table)
    assert in_order(ordered)
    assert sorted(ordered.column("row").to_pylist()) == list(range(len(rows)))
    if in_order(table):
        assert ordered is table  # nothing to sort: the table itself


def test_a_tag_in_two_runs_is_brought_together():
    # Tag 1's rows are each rising, but split by tag 2's: not contiguous.
    table = table_of([(1, 0), (1, 1), (2, 0), (1, 2)])
    ordered = in_tag_bucket_order(table)
    assert ordered is not table and in_order(ordered)
    assert np.array_equal(ordered.column("row").to_numpy(), [0, 1, 3, 2])
