"""The tag directory: row groups cut at tag boundaries, each tag's rows found by id from the
footer, only the groups holding the asked tags decoded, and files without a directory (written
by older versions or other tools) still read correctly."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tagflow.io_managers.partition_writer as partition_writer
from tagflow.errors import MissingPartition
from tagflow.io_managers import DatasetStore
from tagflow.io_managers.partition_reader import PARSED_PER_SERIALIZED_BYTE, Footer, FooterCache
from tagflow.io_managers.tag_directory import TagDirectory, group_ends
from tagflow.schemas.arrow import TRANSITIONS

DAY = date(2026, 3, 1)
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def transitions(rows_per_tag: list[int], value: float = 1.0) -> pa.Table:
    """Tags named t000, t001, … (ids 100, 99, …: not in name order) with the given rows."""
    rows = [
        {"tag_id": 100 - i, "tag_name": f"t{i:03d}", "time": T0 + timedelta(minutes=k),
         "value_double": value + 1000 * i + k, "value_string": None, "value_kind": "numeric"}
        for i, count in enumerate(rows_per_tag) for k in range(count)
    ]  # fmt: skip
    return pa.Table.from_pylist(rows, schema=TRANSITIONS)


@given(
    runs=st.lists(st.integers(1, 30), min_size=1, max_size=40),
    target=st.integers(1, 40),
)
def test_row_groups_end_at_tag_boundaries_unless_a_tag_is_larger(runs, target):
    ids = np.repeat(np.arange(len(runs)), runs)
    ends = group_ends(ids, target)
    boundaries = set(np.cumsum(runs).tolist())
    starts = [0, *ends[:-1]]
    assert ends[-1] == len(ids) and all(a < b for a, b in zip(starts, ends, strict=True))
    for start, end in zip(starts, ends, strict=True):
        assert end - start <= target
        if end not in boundaries:  # cut inside a tag: only when the tag fills the group
            assert ids[start] == ids[end - 1] == ids[end] and end - start == target
        else:  # no further boundary would have fit
            nxt = min((b for b in boundaries if b > end), default=None)
            assert nxt is None or nxt - start > target


@settings(max_examples=40, deadline=None)
@given(
    runs=st.lists(st.integers(0, 12), min_size=1, max_size=12),
    splits=st.lists(st.integers(0, 60), max_size=3),
    group_rows=st.integers(1, 9),
    asked=st.lists(st.integers(85, 105), max_size=6),
    columns=st.sampled_from([None, ["time", "value_double"], ["tag_id", "time"]]),
)
def test_reading_tags_by_id_returns_exactly_their_rows(
    tmp_path_factory, runs, splits, group_rows, asked, columns
):
    table = transitions(runs)
    cuts = sorted({min(s, table.num_rows) for s in splits} | {0, table.num_rows})
    pieces = [table.slice(a, b - a) for a, b in zip(cuts, cuts[1:], strict=False)]
    store = DatasetStore(tmp_path_factory.mktemp("dir"))
    original = partition_writer.ROW_GROUP_ROWS
    partition_writer.ROW_GROUP_ROWS = group_rows
    try:
        store.write("transitions", "acme", DAY, iter(pieces))  # a tag may span two writes
    finally:
        partition_writer.ROW_GROUP_ROWS = original
    names = columns or TRANSITIONS.names
    got = store.read_tag_rows("transitions", "acme", DAY, asked, columns)
    expected = table.filter(pc.is_in(table["tag_id"], pa.array(asked, pa.int32()))).select(names)
    assert got.to_pylist() == expected.to_pylist()
    everything = store.read_tag_rows("transitions", "acme", DAY, None, columns)
    assert everything.to_pylist() == table.select(names).to_pylist()


def test_only_the_row_groups_holding_the_tags_are_decoded(tmp_path, monkeypatch):
    monkeypatch.setattr(partition_writer, "ROW_GROUP_ROWS", 2)
    store = DatasetStore(tmp_path)
    store.write("transitions", "acme", DAY, transitions([2, 2, 2, 2]))
    footer = Footer.of(
        pq.ParquetFile(store.partition_path("transitions", "acme", DAY).path).metadata
    )
    assert footer.metadata.num_row_groups == 4
    ids, firsts, counts = footer.directory.runs_of(np.array([97, 99, 12345]))
    assert ids.tolist() == [99, 97] and firsts.tolist() == [2, 6] and counts.tolist() == [2, 2]
    groups, take, kept = footer.directory.plan(firsts, counts)
    assert groups == [1, 3] and take.tolist() == [0, 1, 2, 3] and kept.tolist() == [2, 2]
    rows = store.read_tag_rows("transitions", "acme", DAY, [97, 99], ["time", "value_double"])
    assert rows.column("value_double").to_pylist() == [1001.0, 1002.0, 3001.0, 3002.0]
    assert store.read_tag_rows("transitions", "acme", DAY, [12345]).num_rows == 0
    assert store.read_tag_rows("transitions", "acme", DAY, []).num_rows == 0


def test_a_file_without_a_directory_is_read_by_its_tag_ids(tmp_path):
    store = DatasetStore(tmp_path)
    table = transitions([3, 1, 2])
    path = store.partition_path("transitions", "acme", DAY).path
    store.partition_path("transitions", "acme", DAY).parent.mkdir(parents=True)
    pq.write_table(table, path, row_group_size=2)
    rows = store.read_tag_rows("transitions", "acme", DAY, [98, 100], ["tag_id", "value_double"])
    assert rows.to_pylist() == [{"tag_id": 100, "value_double": v} for v in (1.0, 2.0, 3.0)] + [
        {"tag_id": 98, "value_double": v} for v in (2001.0, 2002.0)
    ]


def test_a_rewritten_partition_is_read_afresh(tmp_path):
    store = DatasetStore(tmp_path)
    store.write("transitions", "acme", DAY, transitions([1], value=1.0))
    assert (
        store.read_tag_rows("transitions", "acme", DAY, [100]).column("value_double")[0].as_py()
        == 1.0
    )
    store.write("transitions", "acme", DAY, transitions([3], value=5.0))
    rows = store.read_tag_rows("transitions", "acme", DAY, [100])
    assert rows.column("value_double").to_pylist() == [5.0, 6.0, 7.0]


def test_a_missing_partition_is_a_typed_error_without_a_path(tmp_path):
    with pytest.raises(MissingPartition) as failure:
        DatasetStore(tmp_path).read_tag_rows("spans", "acme", DAY, [1])
    assert str(tmp_path) not in str(failure.value)


@given(
    group_sizes=st.lists(st.integers(1, 6), min_size=1, max_size=12),
    data=st.data(),
)
def test_the_plan_takes_exactly_the_runs_rows_in_the_allowed_groups(group_sizes, data):
    """Against a row-by-row reference: which groups are read, which of their rows are taken
    (in order), and how many rows of each run are kept."""
    starts = np.concatenate([[0], np.cumsum(group_sizes)])
    total = int(starts[-1])
    cuts = sorted(
        set(data.draw(st.lists(st.integers(1, total - 1), max_size=8)) if total > 1 else [])
    )
    bounds = [0, *cuts, total]
    runs = data.draw(
        st.lists(st.integers(0, len(bounds) - 2), unique=True, max_size=len(bounds) - 1)
    )
    runs.sort()
    firsts = np.array([bounds[r] for r in runs], np.int64)
    counts = np.array([bounds[r + 1] - bounds[r] for r in runs], np.int64)
    allowed = np.array(
        data.draw(st.lists(st.booleans(), min_size=len(group_sizes), max_size=len(group_sizes)))
    )
    directory = TagDirectory(np.arange(len(runs)), firsts, counts, starts)
    groups, take, kept = directory.plan(firsts, counts, allowed)
    group_of_row = np.searchsorted(starts, np.arange(total), side="right") - 1
    wanted_rows = [
        row for first, count in zip(firsts, counts, strict=True)
        for row in range(first, first + count) if allowed[group_of_row[row]]
    ]  # fmt: skip
    assert groups == sorted({int(group_of_row[row]) for row in wanted_rows})
    read_rows = [row for g in groups for row in range(starts[g], starts[g + 1])]
    assert [read_rows[k] for k in take.tolist()] == wanted_rows
    assert kept.tolist() == [
        sum(1 for row in range(f, f + c) if allowed[group_of_row[row]])
        for f, c in zip(firsts, counts, strict=True)
    ]


def test_the_footer_cache_counts_footers_as_parsed_not_as_serialized(tmp_path):
    """Parsed footers take about 9 times their serialized bytes: a cache counting serialized
    bytes held 2.2 GB under a 256 MB budget. Room for two parsed footers holds two."""
    path = tmp_path / "one.parquet"
    pq.write_table(pa.table({"a": list(range(1000))}), path, row_group_size=10)
    footers = [Footer.of(pq.read_metadata(path)) for _ in range(3)]
    parsed = footers[0].metadata.serialized_size * PARSED_PER_SERIALIZED_BYTE
    cache = FooterCache(int(parsed * 2.5))
    for key, footer in enumerate(footers):
        cache.put((key,), footer)
    assert [cache.get((key,)) is not None for key in range(3)] == [False, True, True]
