"""DatasetStore.read_tag_rows, the read API's partition reader: tag filter pushed down to
row-group statistics, column selection, rewritten partitions, missing partitions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tagflow.io_managers.dataset_store as dataset_store
import tagflow.io_managers.partition_writer as partition_writer
from tagflow.errors import MissingPartition
from tagflow.io_managers import DatasetStore
from tagflow.schemas.arrow import TRANSITIONS

DAY = date(2026, 3, 1)
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def transitions(names: list[str], per_tag: int, value: float = 1.0) -> pa.Table:
    rows = [
        {"tag_id": i, "tag_name": name, "time": T0 + timedelta(minutes=k),
         "value_double": value + k, "value_string": None, "value_kind": "numeric"}
        for i, name in enumerate(names) for k in range(per_tag)
    ]  # fmt: skip
    return pa.Table.from_pylist(rows, schema=TRANSITIONS)


def test_only_row_groups_that_may_hold_the_tags_are_read(tmp_path, monkeypatch):
    monkeypatch.setattr(partition_writer, "ROW_GROUP_ROWS", 2)
    store = DatasetStore(tmp_path)
    store.write("transitions", "acme", DAY, transitions(["a", "b", "c", "d"], per_tag=2))
    path = store.partition_path("transitions", "acme", DAY).path
    metadata = pq.ParquetFile(path).metadata
    assert metadata.num_row_groups == 4
    assert dataset_store._row_groups_holding(metadata, ["b", "d"]) == [1, 3]
    assert dataset_store._row_groups_holding(metadata, ["bb"]) == []
    rows = store.read_tag_rows("transitions", "acme", DAY, ["d", "b"], ["time", "value_double"])
    assert rows.column_names == ["time", "value_double"] and rows.num_rows == 4
    assert store.read_tag_rows("transitions", "acme", DAY, ["zz"]).num_rows == 0
    assert store.read_tag_rows("transitions", "acme", DAY, []).num_rows == 0
    assert store.read_tag_rows("transitions", "acme", DAY, None).num_rows == 8


def test_a_rewritten_partition_is_read_afresh(tmp_path):
    store = DatasetStore(tmp_path)
    store.write("transitions", "acme", DAY, transitions(["a"], per_tag=1, value=1.0))
    assert (
        store.read_tag_rows("transitions", "acme", DAY, ["a"]).column("value_double")[0].as_py()
        == 1.0
    )
    store.write("transitions", "acme", DAY, transitions(["a"], per_tag=3, value=5.0))
    rows = store.read_tag_rows("transitions", "acme", DAY, ["a"])
    assert rows.column("value_double").to_pylist() == [5.0, 6.0, 7.0]


def test_a_missing_partition_is_a_typed_error_without_a_path(tmp_path):
    with pytest.raises(MissingPartition) as failure:
        DatasetStore(tmp_path).read_tag_rows("spans", "acme", DAY, ["a"])
    assert str(tmp_path) not in str(failure.value)
