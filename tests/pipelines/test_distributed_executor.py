"""The dask executor (TAGFLOW_EXECUTOR=dask) against a real dask.distributed cluster on loopback:
a launched run of one tenant-day executes every step as a task on the cluster's workers and
writes the same Parquet files as an in-process materialisation."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
from distributed import Client, LocalCluster, get_task_stream

from tagflow.assets.partitions import tenant_day_key
from tagflow.cli.runs import QUIET_CONSOLE, materialize_days
from tagflow.errors import InvalidArgument
from tagflow.pipelines.dagster_internals import PARTITION_TAG
from tagflow.pipelines.definitions import build_definitions
from tagflow.pipelines.executor import DASK_ADDRESS_ENV, EXECUTOR_ENV, launched_run_executor
from tagflow.pipelines.instance import PG_URL_ENV, dagster_instance
from tagflow.pipelines.schedules import all_assets_job
from tagflow.settings import Settings


def executor_of(env: dict[str, str]) -> dg.ExecutorDefinition:
    return launched_run_executor(Settings.from_env(env))


def test_the_executor_is_chosen_by_the_environment():
    assert executor_of({}).name == "tagflow_multiprocess"
    assert executor_of({EXECUTOR_ENV: "multiprocess"}).name == "tagflow_multiprocess"
    dask = executor_of({EXECUTOR_ENV: "dask", DASK_ADDRESS_ENV: "tcp://10.0.0.5:8786"})
    assert dask.name == "tagflow_dask"
    config = dask.apply_config_mapping({}).value["config"]
    assert config == {"address": "tcp://10.0.0.5:8786", "max_concurrent": None}
    with pytest.raises(InvalidArgument, match=DASK_ADDRESS_ENV):
        executor_of({EXECUTOR_ENV: "dask"})
    with pytest.raises(InvalidArgument, match=EXECUTOR_ENV):
        executor_of({EXECUTOR_ENV: "celery"})


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def dask_env(small_plant, pg_url, tmp_path, monkeypatch) -> Iterator[tuple[Client, Path]]:
    """A two-worker cluster (one process and one thread each) whose workers, like the run,
    rebuild the definitions from the environment: TAGFLOW_EXECUTOR=dask at the scheduler's
    address, the test source and a temp store. Yields a client and the store root."""
    store = tmp_path / "dask-store"
    address = f"tcp://127.0.0.1:{free_loopback_port()}"
    # Set before the cluster starts: worker processes inherit the environment at spawn.
    monkeypatch.setenv("TAGFLOW_SOURCE_URL", pg_url)
    monkeypatch.setenv("TAGFLOW_STORE", str(store))
    monkeypatch.setenv(EXECUTOR_ENV, "dask")
    monkeypatch.setenv(DASK_ADDRESS_ENV, address)
    with (
        LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            scheduler_port=int(address.rsplit(":", 1)[1]),
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        assert cluster.scheduler_address == address
        yield client, store


def dask_job() -> dg.JobDefinition:
    """The code location's job of every asset, rebuilt from the environment wherever it is
    reconstructed (the run and each dask worker)."""
    return build_definitions(Settings.from_env()).resolve_job_def(all_assets_job.name)


def store_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_run_on_the_dask_executor_writes_what_an_in_process_run_writes(
    dask_env, small_plant, pg_url, tmp_path, monkeypatch
):
    client, store = dask_env
    job = dask_job()
    assert job.executor_def.name == "tagflow_dask"
    tenant = small_plant.tenants[0].tenant
    day = small_plant.start.date() + timedelta(days=1)  # has a carry-in from the day before
    monkeypatch.delenv(PG_URL_ENV, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    settings = Settings.from_env()
    # Persistent (SQLite): workers record events through its ref.
    instance = dagster_instance(settings)
    try:
        instance.add_dynamic_partitions("tenant", [tenant])
        tags = {PARTITION_TAG: str(tenant_day_key(tenant, day.isoformat()))}
        with get_task_stream(client) as tasks:
            result = dg.execute_job(
                dg.reconstructable(dask_job), instance, run_config=QUIET_CONSOLE, tags=tags
            )
        assert result.success
        starts = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_START)
        steps = {event.step_key for event in starts}
        assert steps == {"day", "published_files"}
        assert os.getpid() not in {event.dagster_event.pid for event in starts}
        # Every step ran as a task on the cluster, keyed by its run (see DaskStepHandler).
        prefix = f"tagflow-{result.run_id}-"
        ran = {task["key"][len(prefix) :].rsplit("-", 1)[0] for task in tasks.data}
        assert ran == steps
    finally:
        instance.dispose()

    reference = tmp_path / "in-process-store"
    settings = Settings(source_url=pg_url, store=str(reference))
    end = day + timedelta(days=1)
    (run,) = materialize_days(tenant, day, end, dg.DagsterInstance.ephemeral(), settings)
    assert run.success
    expected = store_files(reference)
    assert len(expected) >= 8 and all(f"tenant={tenant}" in name for name in expected)
    # Byte equality (the writer is deterministic) is table equality that also holds for NaN,
    # which Table.equals treats as unequal to itself.
    assert store_files(store) == expected
