"""The dataset layout, atomic replacement and partition reads of DatasetStore and its IO manager."""

from datetime import UTC, date, datetime

import dagster as dg
import duckdb
import pandas.testing as pdt
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from tagflow.errors import InvalidName, MissingPartition
from tagflow.io_managers import DatasetStore, ParquetDatasetIOManager
from tagflow.schemas.arrow import TRANSITIONS
from tests.stores import read_days

DAY = date(2026, 3, 2)


def transitions_table(values: list[float], tag_name: str = "flow") -> pa.Table:
    times = [datetime(2026, 3, 2, 0, minute, tzinfo=UTC) for minute in range(len(values))]
    return pa.table(
        {
            "tag_id": pa.array([7] * len(values), pa.int32()),
            "tag_name": [tag_name] * len(values),
            "time": pa.array(times, TRANSITIONS.field("time").type),
            "value_double": values,
            "value_string": pa.array([None] * len(values), pa.string()),
            "value_kind": ["numeric"] * len(values),
        },
        schema=TRANSITIONS,
    )


def test_partition_written_at_hive_path_with_zstd_and_statistics(tmp_path):
    store = DatasetStore(tmp_path)
    store.write("transitions", "acme", DAY, transitions_table([1.0, 2.0, 3.0]))
    path = tmp_path / "transitions" / "tenant=acme" / "date=2026-03-02" / "part-0.parquet"
    assert path.is_file()
    metadata = pq.ParquetFile(path).metadata
    column = metadata.row_group(0).column(3)
    assert column.compression == "ZSTD"
    assert column.statistics.has_min_max and column.statistics.min == 1.0
    assert pq.read_schema(path).equals(TRANSITIONS, check_metadata=False)
    assert sorted(p.name for p in path.parent.iterdir()) == ["part-0.parquet"]


def test_tags_dataset_has_no_date_level(tmp_path):
    from tagflow.schemas.arrow import TAGS

    DatasetStore(tmp_path).write("tags", "acme", DAY, TAGS.empty_table())
    assert (tmp_path / "tags" / "tenant=acme" / "part-0.parquet").is_file()


def test_round_trip_returns_equal_table(tmp_path):
    store = DatasetStore(tmp_path)
    table = transitions_table([1.5, float("nan"), 3.0])
    store.write("transitions", "acme", DAY, table)
    read_back = store.read("transitions", "acme", DAY)
    assert read_back.schema.equals(TRANSITIONS)
    pdt.assert_frame_equal(read_back.to_pandas(), table.to_pandas())


def test_a_local_store_reads_partitions_from_native_files(tmp_path, monkeypatch):
    """Never through a Python file object: Arrow's threads may release its buffers after the
    read returned, which takes the GIL, and a process exiting then aborts ("terminate called
    without an active exception", 4 exits in 80 of a script reading the tag list)."""
    store = DatasetStore(tmp_path)
    table = transitions_table([1.0, 2.0])
    store.write("transitions", "acme", DAY, table)

    def no_python_file(*args, **kwargs):
        raise AssertionError("a Python file object was opened")

    monkeypatch.setattr(DatasetStore, "partition_path", no_python_file)
    assert store.read("transitions", "acme", DAY).equals(table)


def test_rerun_replaces_partition_exactly(tmp_path):
    store = DatasetStore(tmp_path)
    store.write("transitions", "acme", DAY, transitions_table([1.0, 2.0, 3.0, 4.0]))
    replacement = transitions_table([9.0])
    store.write("transitions", "acme", DAY, replacement)
    assert store.read("transitions", "acme", DAY).equals(replacement)
    first = store.partition_path("transitions", "acme", DAY).read_bytes()
    store.write("transitions", "acme", DAY, replacement)
    assert store.partition_path("transitions", "acme", DAY).read_bytes() == first


def test_write_interrupted_before_rename_keeps_previous_file(tmp_path, monkeypatch):
    store = DatasetStore(tmp_path)
    original = transitions_table([1.0, 2.0])
    store.write("transitions", "acme", DAY, original)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed before rename")

    monkeypatch.setattr("tagflow.io_managers.partition_writer.os.replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write("transitions", "acme", DAY, transitions_table([5.0, 6.0, 7.0]))
    monkeypatch.undo()
    assert store.read("transitions", "acme", DAY).equals(original)
    leftovers = list(store.partition_path("transitions", "acme", DAY).parent.iterdir())
    assert [p.name for p in leftovers] == ["part-0.parquet"]


def test_readers_see_only_complete_files_next_to_a_stray_temp_file(tmp_path):
    store = DatasetStore(tmp_path)
    store.write("transitions", "acme", DAY, transitions_table([1.0, 2.0]))
    folder = store.partition_path("transitions", "acme", DAY).parent
    (folder / ".part-0.parquet.deadbeef.tmp").write_bytes(b"PAR1 half a file")
    dataset = pads.dataset(tmp_path / "transitions", format="parquet", partitioning="hive")
    assert dataset.to_table().num_rows == 2
    glob = str(tmp_path / "transitions" / "**" / "*.parquet")
    rows = duckdb.sql(f"select count(*) from read_parquet('{glob}', hive_partitioning=true)")
    assert rows.fetchall() == [(2,)]


def test_reading_a_missing_partition_names_it_without_path(tmp_path):
    with pytest.raises(MissingPartition) as error:
        DatasetStore(tmp_path).read("spans", "acme", DAY)
    assert "2026-03-02" in str(error.value) and str(tmp_path) not in str(error.value)


def test_days_read_back_concatenated_in_day_order(tmp_path):
    store = DatasetStore(tmp_path)
    later, earlier = date(2026, 3, 3), DAY
    store.write("transitions", "acme", later, transitions_table([2.0], "b"))
    store.write("transitions", "acme", earlier, transitions_table([1.0], "a"))
    table = read_days(store, "transitions", "acme", [later, earlier])
    assert table["tag_name"].to_pylist() == ["a", "b"]


@pytest.mark.parametrize("tenant", ["../etc", "x; drop schema acme", "acmé", "", "a/b", "a" * 64])
def test_hostile_tenant_names_never_reach_the_filesystem(tmp_path, tenant):
    store = DatasetStore(tmp_path / "store")
    with pytest.raises(InvalidName):
        store.write("transitions", tenant, DAY, transitions_table([1.0]))
    assert not (tmp_path / "store").exists()


def test_object_store_root_round_trip():
    store = DatasetStore("memory://tagflow-test/root")
    table = transitions_table([4.0, 5.0])
    store.write("transitions", "acme", DAY, table)
    store.write("transitions", "acme", DAY, table)
    assert store.read("transitions", "acme", DAY).equals(table)
    assert "memory" in repr(store) and "tagflow-test" not in repr(store)


def test_a_staged_partition_is_invisible_until_published(tmp_path):
    store = DatasetStore(tmp_path)
    store.write("transitions", "acme", DAY, transitions_table([1.0]))
    with store.stage("transitions", "acme", DAY) as writer:
        writer.write(transitions_table([7.0, 8.0]))
        staged = writer.close()
    assert store.read("transitions", "acme", DAY)["value_double"].to_pylist() == [1.0]
    assert (staged.rows, len(staged.sha256)) == (2, 64)
    staged.publish()
    assert store.read("transitions", "acme", DAY)["value_double"].to_pylist() == [7.0, 8.0]
    assert store.verify("transitions", "acme", DAY, staged.rows, staged.sha256) == ""
    folder = store.partition_path("transitions", "acme", DAY).parent
    assert [p.name for p in folder.iterdir()] == ["part-0.parquet"]


def test_a_failed_staging_leaves_no_file_and_the_previous_partition(tmp_path):
    store = DatasetStore(tmp_path)
    store.write("transitions", "acme", DAY, transitions_table([1.0]))
    with pytest.raises(RuntimeError), store.stage("transitions", "acme", DAY) as writer:
        writer.write(transitions_table([7.0]))
        raise RuntimeError("a chunk failed")
    folder = store.partition_path("transitions", "acme", DAY).parent
    assert [p.name for p in folder.iterdir()] == ["part-0.parquet"]
    assert store.read("transitions", "acme", DAY)["value_double"].to_pylist() == [1.0]


def test_io_manager_publishes_staged_partitions_and_writes_tables_it_audits(tmp_path):
    partitions = dg.MultiPartitionsDefinition(
        {
            "tenant": dg.StaticPartitionsDefinition(["acme"]),
            "date": dg.DailyPartitionsDefinition(start_date="2026-03-01"),
        }
    )
    store = DatasetStore(tmp_path)

    @dg.asset(partitions_def=partitions, io_manager_key="datasets", name="transitions")
    def staged(context: dg.AssetExecutionContext) -> list:
        day = date.fromisoformat(context.partition_key.keys_by_dimension["date"])
        with store.stage("transitions", "acme", day) as writer:
            writer.write(transitions_table([float(day.day)]))
            return [writer.close()]

    io_manager = ParquetDatasetIOManager(root=str(tmp_path))
    for day in ["2026-03-01", "2026-03-02"]:
        key = dg.MultiPartitionKey({"tenant": "acme", "date": day})
        result = dg.materialize([staged], partition_key=key, resources={"datasets": io_manager})
        assert result.success
        (event,) = result.get_asset_materialization_events()
        metadata = event.materialization.metadata
        assert metadata["dagster/row_count"].value == 1
        assert metadata["dagster/relation_identifier"].value == (
            f"transitions/tenant=acme/date={day}"
        )
        assert str(tmp_path) not in str(metadata)
    expected = tmp_path / "transitions" / "tenant=acme" / "date=2026-03-02" / "part-0.parquet"
    assert expected.is_file()
    loaded = read_days(store, "transitions", "acme", [date(2026, 3, 1), DAY])
    assert loaded["value_double"].to_pylist() == [1.0, 2.0]
