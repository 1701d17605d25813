"""Store hygiene (issue 17, item 5) at the dataset store: an unreadable file is a typed
CorruptPartition naming no path, a stray folder is ignored and logged, writes never go through a
symbolic link or out of the root, and stale temp files of killed runs are swept safely."""

from __future__ import annotations

import logging
import os
import time
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tagflow.cli.app import app
from tagflow.errors import CorruptPartition, MissingPartition, TagflowError
from tagflow.io_managers import DatasetStore, ParquetDatasetIOManager
from tagflow.io_managers.sweeper import sweep_stale_temp_files
from tagflow.schemas.registry import DATASETS
from tests.io_managers.test_dataset_store import DAY, transitions_table

HOURS = 3600
STALE = 7 * HOURS  # older than the 6 h default
UUID = "0123456789abcdef0123456789abcdef"


def written(tmp_path: Path) -> tuple[DatasetStore, Path]:
    store = DatasetStore(tmp_path)
    store.write("transitions", "acme", DAY, transitions_table([1.0, 2.0, 3.0]))
    return store, Path(store.partition_path("transitions", "acme", DAY).path)


def zero(path: Path) -> None:
    path.write_bytes(b"")


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garble(path: Path) -> None:
    """The same size, its footer overwritten: the file no longer parses."""
    data = bytearray(path.read_bytes())
    data[-64:-4] = b"\xff" * 60
    path.write_bytes(bytes(data))


# --- an unreadable file is a typed error ------------------------------------------------------


@pytest.mark.parametrize("damage", [zero, truncate, garble], ids=lambda f: f.__name__)
def test_every_read_of_an_unreadable_file_is_a_corrupt_partition_naming_no_path(tmp_path, damage):
    store, path = written(tmp_path)
    # Read once first: the footer cache must not hide the damage done after.
    assert store.read_tag_rows("transitions", "acme", DAY, [7]).num_rows == 3
    damage(path)
    reads = {
        "read": lambda: store.read("transitions", "acme", DAY),
        "read_tag_rows": lambda: store.read_tag_rows("transitions", "acme", DAY, [7]),
        "all rows": lambda: store.read_tag_rows("transitions", "acme", DAY),
    }
    for name, read in reads.items():
        with pytest.raises(CorruptPartition) as caught:
            read()
        error = caught.value
        message = str(error)
        assert "transitions" in message and "'acme'" in message, name
        assert "2026-03-02" in message and "materialise that day again" in message, name
        assert str(tmp_path) not in message and "parquet" not in message.lower(), name
        assert (error.dataset, error.tenant, error.day) == ("transitions", "acme", DAY)
        assert error.__cause__ is None and error.__suppress_context__, name


def test_a_zero_byte_tags_file_is_a_corrupt_partition(tmp_path):
    store = DatasetStore(tmp_path)
    store.write("tags", "acme", None, DATASETS["tags"].schema.empty_table())
    zero(Path(store.partition_path("tags", "acme").path))
    with pytest.raises(CorruptPartition, match="stored tags of tenant 'acme' cannot be read"):
        store.read("tags", "acme")


def test_a_missing_file_is_still_a_missing_partition(tmp_path):
    store, path = written(tmp_path)
    path.unlink()
    with pytest.raises(MissingPartition):
        store.read_tag_rows("transitions", "acme", DAY, [7])


def test_the_check_describes_an_unreadable_file(tmp_path):
    store, path = written(tmp_path)
    staged = store.write("transitions", "acme", DAY, transitions_table([1.0, 2.0, 3.0]))
    assert store.verify("transitions", "acme", DAY, staged.rows, staged.sha256) == ""
    for damage in (zero, truncate):
        store.write("transitions", "acme", DAY, transitions_table([1.0, 2.0, 3.0]))
        damage(path)
        verdict = store.verify("transitions", "acme", DAY, staged.rows, staged.sha256)
        assert verdict == (
            "the partition file is not a readable Parquet file (truncated or corrupted)"
        )


# --- readers ignore what is not a partition ---------------------------------------------------


def test_a_stray_folder_is_ignored_and_logged(tmp_path, caplog):
    store, _ = written(tmp_path)
    folder = Path(store.partition_path("transitions", "acme", DAY).path).parent.parent
    for stray in ("date=2026-03-05.bak", "date=2026-3-5", "date=2026-02-30", "notes"):
        (folder / stray).mkdir()
        (folder / stray / "part-0.parquet").write_bytes(b"not parquet")
    (folder / "date=2026-03-06").mkdir()  # a day folder without its file: not materialised
    with caplog.at_level(logging.WARNING, logger="tagflow.io_managers.dataset_store"):
        assert store.materialised_days("transitions", "acme") == [DAY]
    logged = caplog.text
    assert "date=2026-03-05.bak" in logged and "notes" in logged
    assert str(tmp_path) not in logged


# --- writers refuse links and paths out of the root ------------------------------------------


def test_a_write_through_a_linked_partition_folder_is_refused(tmp_path):
    elsewhere = tmp_path / "other-store"
    elsewhere.mkdir()
    (elsewhere / "part-0.parquet").write_bytes(b"another store's file")
    store = DatasetStore(tmp_path / "store")
    tenant_folder = Path(store.partition_path("transitions", "acme", DAY).path).parent.parent
    tenant_folder.mkdir(parents=True)
    (tenant_folder / "date=2026-03-02").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(TagflowError, match="symbolic link") as error:
        store.write("transitions", "acme", DAY, transitions_table([1.0]))
    assert str(tmp_path) not in str(error.value)
    assert (elsewhere / "part-0.parquet").read_bytes() == b"another store's file"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["part-0.parquet"]


def test_a_write_through_a_linked_dataset_folder_is_refused(tmp_path):
    elsewhere = tmp_path / "other-store"
    elsewhere.mkdir()
    root = tmp_path / "store"
    root.mkdir()
    (root / "transitions").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(TagflowError, match="symbolic link"):
        DatasetStore(root).write("transitions", "acme", DAY, transitions_table([1.0]))
    assert list(elsewhere.iterdir()) == []


def test_a_write_out_of_the_root_is_refused(tmp_path):
    store = DatasetStore(tmp_path / "store")
    outside = store.root.joinpath("..", "..", "escaped", "part-0.parquet")
    with pytest.raises(TagflowError, match="outside the store root"):
        store._refuse_links(outside)


# --- stale temp files are swept ---------------------------------------------------------------


def temp_file(folder: Path, age_s: float, target: str = "part-0.parquet", uuid: str = UUID):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{target}.{uuid}.tmp"
    path.write_bytes(b"x" * 100)
    moment = time.time() - age_s
    os.utime(path, (moment, moment))
    return path


@pytest.fixture
def swept_store(tmp_path):
    """A store with one partition of each of two tenants, and beside them: stale and fresh
    temp files, files that only look like temp files, and links to temp files elsewhere."""
    store = DatasetStore(tmp_path / "store")
    for tenant in ("acme", "globex"):
        store.write("transitions", tenant, DAY, transitions_table([1.0, 2.0]))
        store.write("tags", tenant, None, DATASETS["tags"].schema.empty_table())
    day = lambda tenant: Path(store.partition_path("transitions", tenant, DAY).path).parent  # noqa: E731
    tags = Path(store.partition_path("tags", "acme").path).parent
    outside = tmp_path / "outside"
    paths = {
        "stale": temp_file(day("acme"), STALE),
        "stale tags": temp_file(tags, STALE),
        "stale month copy": temp_file(
            tmp_path / "store" / "_compacted" / "spans" / "tenant=acme" / "month=2026-03", STALE
        ),
        "stale other tenant": temp_file(day("globex"), STALE),
        "fresh": temp_file(day("acme"), 60, uuid="f" * 32),
        "young enough": temp_file(day("acme"), 5 * HOURS, uuid="e" * 32),
        # Old, but not named as tagflow stages: never touched.
        "not hex": temp_file(day("acme"), STALE, uuid="z" * 32),
        "short uuid": temp_file(day("acme"), STALE, uuid="abc"),
        "not parquet": temp_file(day("acme"), STALE, target="notes.txt"),
        "outside target": temp_file(outside, STALE),
    }
    for name in ("plain.tmp", "part-0.parquet.bak", ".hidden"):
        path = day("acme") / name
        path.write_bytes(b"keep")
        os.utime(path, (time.time() - STALE,) * 2)
        paths[name] = path
    # A link named like a temp file, and a linked folder holding one: neither is followed.
    link = day("acme") / f".part-0.parquet.{'d' * 32}.tmp"
    link.symlink_to(paths["outside target"])
    paths["link"] = link
    linked_folder = Path(store.partition_path("transitions", "acme", date(2026, 3, 9)).path).parent
    linked_folder.symlink_to(outside, target_is_directory=True)
    paths["linked folder"] = linked_folder
    return store, paths


def test_stale_temp_files_are_removed_and_nothing_else(swept_store, caplog):
    store, paths = swept_store
    partitions = {
        (dataset, tenant): Path(store.partition_path(dataset, tenant, day).path).read_bytes()
        for dataset, day in (("transitions", DAY), ("tags", None))
        for tenant in ("acme", "globex")
    }
    with caplog.at_level(logging.INFO, logger="tagflow.io_managers.sweeper"):
        report = sweep_stale_temp_files(store, 6 * HOURS)
    removed = {"stale", "stale tags", "stale month copy", "stale other tenant"}
    assert {name for name, path in paths.items() if not os.path.lexists(path)} == removed
    assert (report.removed, report.kept_fresh, report.failed) == (4, 2, 0)
    assert report.removed_bytes == 400
    for (dataset, tenant), content in partitions.items():
        day = DAY if dataset == "transitions" else None
        assert Path(store.partition_path(dataset, tenant, day).path).read_bytes() == content
    assert paths["outside target"].exists() and paths["link"].is_symlink()
    assert "4 stale temp file(s) removed" in caplog.text
    assert "transitions/tenant=acme/date=2026-03-02/.part-0.parquet." in caplog.text
    assert str(store.root.path) not in caplog.text


def test_a_tenants_sweep_stays_in_its_folders(swept_store):
    store, paths = swept_store
    report = ParquetDatasetIOManager(root=store.root.path).sweep_stale_temp_files("acme")
    assert report.removed == 3
    assert paths["stale other tenant"].exists() and not paths["stale"].exists()


def test_the_age_is_configurable_and_never_zero(swept_store):
    store, paths = swept_store
    report = sweep_stale_temp_files(store, 4 * HOURS, "acme")
    assert report.removed == 4 and not paths["young enough"].exists()
    assert paths["fresh"].exists()
    with pytest.raises(ValueError):
        sweep_stale_temp_files(store, 0)


def test_a_sweep_of_a_missing_store_does_nothing(tmp_path):
    assert sweep_stale_temp_files(DatasetStore(tmp_path / "none"), 60).removed == 0


def test_the_cli_sweeps_and_prints_counts(swept_store, monkeypatch):
    store, paths = swept_store
    monkeypatch.setenv("TAGFLOW_TEMP_MAX_AGE_S", str(6 * HOURS))
    result = CliRunner().invoke(app, ["store", "sweep", "--store", store.root.path])
    assert result.exit_code == 0, result.output
    assert "4 stale temp file(s) removed (400 bytes), 2 recent one(s) kept" in result.output
    result = CliRunner().invoke(
        app, ["store", "sweep", "--store", store.root.path, "--max-age-s", "30"]
    )
    assert result.exit_code == 0 and "2 stale temp file(s) removed" in result.output
    assert not paths["fresh"].exists() and paths["plain.tmp"].exists()
    result = CliRunner().invoke(app, ["store", "sweep", "--tenant", "../x"])
    assert result.exit_code == 2 and "invalid tenant name" in result.output


def garble_pages(path: Path) -> None:
    """The footer intact, every column chunk's pages overwritten: the file opens, its rows do
    not decode."""
    data = bytearray(path.read_bytes())
    group = pq.read_metadata(path).row_group(0)
    for index in range(group.num_columns):
        column = group.column(index)
        start = column.dictionary_page_offset or column.data_page_offset
        data[start : start + column.total_compressed_size] = b"\xff" * column.total_compressed_size
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [zero, truncate, garble, garble_pages], ids=lambda f: f.__name__)
def test_a_month_copy_of_an_unreadable_day_is_a_corrupt_partition_naming_no_path(tmp_path, damage):
    from tagflow.io_managers.compaction import compact_month

    store, path = written(tmp_path)
    damage(path)
    names = pa.table({"tag_id": pa.array([7], pa.int32()), "tag_name": ["flow"]})
    with pytest.raises(CorruptPartition) as caught:
        compact_month(store, "transitions", "acme", DAY.replace(day=1), names)
    message = str(caught.value)
    assert "transitions" in message and "2026-03-02" in message
    assert str(tmp_path) not in message and "parquet" not in message.lower()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
