"""The home's SQLite storage keeps connections open and commits without waiting for the disk:
what it writes is Dagster's own files (a stock instance reads them, and it reads a stock
instance's), a killed process loses none of its committed events, and a process reading many
runs keeps a bounded number of files open."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import pytest

from tagflow.pipelines.instance import prepare_dagster_home
from tagflow.pipelines.sqlite_storage import PooledSqliteEventLogStorage
from tagflow.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dg.asset(partitions_def=dg.StaticPartitionsDefinition(["a", "b"]))
def numbers(context) -> dg.MaterializeResult:  # type: ignore[no-untyped-def]
    return dg.MaterializeResult(metadata={"partition": context.partition_key})


def pooled_instance(home: Path) -> dg.DagsterInstance:
    prepare_dagster_home(Settings(), home)
    instance = dg.DagsterInstance.from_config(str(home))
    assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    return instance


def stock_instance(home: Path, config_dir: Path) -> dg.DagsterInstance:
    """Dagster's own SQLite storage on `home`'s files."""
    config_dir.mkdir()
    (config_dir / "dagster.yaml").write_text(f"storage:\n  sqlite:\n    base_dir: {home}\n")
    instance = dg.DagsterInstance.from_config(str(config_dir))
    assert type(instance.event_log_storage).__name__ == "SqliteEventLogStorage"
    return instance


def materialised(instance: dg.DagsterInstance) -> dict[str, str]:
    records = instance.fetch_materializations(dg.AssetKey("numbers"), limit=10).records
    return {
        r.partition_key: r.asset_materialization.metadata["partition"].value  # type: ignore[union-attr]
        for r in records
        if r.partition_key is not None
    }


def test_a_stock_instance_reads_the_pooled_storage_and_back(tmp_path):
    home = tmp_path / "home"
    with pooled_instance(home) as instance:
        assert dg.materialize([numbers], instance=instance, partition_key="a").success
    with stock_instance(home, tmp_path / "stock") as stock:
        assert materialised(stock) == {"a": "a"}
        assert dg.materialize([numbers], instance=stock, partition_key="b").success
    with pooled_instance(home) as instance:
        assert materialised(instance) == {"a": "a", "b": "b"}
        assert len(instance.get_runs()) == 2


def test_a_process_reading_many_runs_keeps_few_files_open(tmp_path):
    home = tmp_path / "home"
    with pooled_instance(home) as instance:
        runs = [
            instance.run_storage.add_run(dg.DagsterRun(job_name="j", run_id=str(uuid.uuid4())))
            for _ in range(12)
        ]
        for run in runs:
            instance.report_engine_event("hello", run)
        for run in runs:
            assert [e.message for e in instance.all_logs(run.run_id)] == ["hello"]
        history = str(home / "history")
        databases = {f for f in open_files(history) if f.endswith(".db")}
        # Each run's events are a file of their own: 12 runs, the index and the runs table,
        # of which the event log keeps 8 open, and the run storage its one.
        assert len(databases) <= 9, sorted(databases)
    assert not open_files(history)


def open_files(folder: str) -> set[str]:
    """The files under `folder` this process has open."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # the listing's own descriptor, closed by now
            continue
        if target.startswith(folder):
            found.add(target)
    return found


WRITER = """
import sys, uuid
import dagster as dg
instance = dg.DagsterInstance.from_config(sys.argv[1])
run = instance.run_storage.add_run(dg.DagsterRun(job_name="j", run_id=str(uuid.uuid4())))
for i in range(50):
    instance.report_engine_event(f"event {i}", run)
print(run.run_id, flush=True)
sys.stdin.readline()
"""


@pytest.mark.skipif(sys.platform != "linux", reason="kill -9 of a child process")
def test_a_killed_process_loses_no_committed_event(tmp_path):
    home = tmp_path / "home"
    prepare_dagster_home(Settings(), home)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(home)],
        cwd=PROJECT_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    run_id = writer.stdout.readline().strip()
    # Killed with its connections open and the last commits in the write-ahead log.
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    with stock_instance(home, tmp_path / "stock") as stock:
        messages = [e.message for e in stock.all_logs(run_id)]
    assert messages == [f"event {i}" for i in range(50)]


def test_tables_are_found_as_dagster_finds_them(tmp_path):
    home = tmp_path / "home"
    with (
        pooled_instance(home) as instance,
        stock_instance(home, tmp_path / "stock") as stock,
    ):
        for table in ("dynamic_partitions", "asset_check_executions", "no_such_table"):
            expected = stock.event_log_storage.has_table(table)  # type: ignore[attr-defined]
            assert instance.event_log_storage.has_table(table) == expected  # type: ignore[attr-defined]
            # Asked again: the answer is kept only once the table exists.
            assert instance.event_log_storage.has_table(table) == expected  # type: ignore[attr-defined]
        assert not instance.event_log_storage.has_table("no_such_table")  # type: ignore[attr-defined]


def test_a_wiped_home_takes_new_events_in_new_files(tmp_path):
    home = tmp_path / "home"
    with pooled_instance(home) as instance:
        run = instance.run_storage.add_run(dg.DagsterRun(job_name="j", run_id=str(uuid.uuid4())))
        instance.report_engine_event("before", run)
        instance.event_log_storage.wipe()
        instance.report_engine_event("after", run)
        with stock_instance(home, tmp_path / "stock") as stock:
            assert [e.message for e in stock.all_logs(run.run_id)] == ["after"]
