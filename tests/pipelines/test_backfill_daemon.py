"""`tagflow backfill` through the Dagster instance: the backfill daemon (`dagster-daemon run`)
launches the range runs, and their files equal an in-process range run's byte for byte.
A long trial (TAGFLOW_FULL_RELIABILITY=1); the range runs themselves are tested in CI by
test_range_backfill.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import BACKFILL_ID_TAG

from tagflow.cli.runs import materialize_days
from tagflow.io_managers import DatasetStore
from tagflow.pipelines.instance import PG_URL_ENV, dagster_instance
from tagflow.settings import Settings
from tests.pipelines.conftest import DAYS, START
from tests.pipelines.test_materialize import DATED
from tests.reliability.trials import long_trial

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def daemon_env(tmp_path, pg_url):
    """A fresh Dagster home, the source and a store, as the daemon and the CLI both see them."""
    env = {key: value for key, value in os.environ.items() if key != PG_URL_ENV}
    env.update(
        DAGSTER_HOME=str(tmp_path / "home"),
        TAGFLOW_SOURCE_URL=pg_url,
        TAGFLOW_STORE=str(tmp_path / "store"),
        TAGFLOW_MAX_CONCURRENT="2",
    )
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.delenv(PG_URL_ENV, raising=False)
        # Writes the home's dagster.yaml before the daemon reads it.
        dagster_instance(Settings.from_env())
        yield env


@long_trial  # about 3 minutes: the daemon, its code server and a process per step
def test_cli_backfill_through_the_daemon_runs_ten_days_in_one_run(
    ten_days,
    daemon_env,
    pg_url,
    tmp_path,  # noqa: F811 (fixture)
):
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        env=daemon_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        end = START + timedelta(days=DAYS)
        cli = subprocess.run(
            [
                str(BIN / "tagflow"),
                "backfill",
                "--tenant",
                ten_days,
                "--start",
                START.isoformat(),
                "--end",
                end.isoformat(),
            ],
            cwd=PROJECT_ROOT,
            env=daemon_env,
            capture_output=True,
            text=True,
            timeout=420,
        )
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "COMPLETED_SUCCESS" in cli.stderr

    instance = dg.DagsterInstance.get()
    (backfill,) = instance.get_backfills()
    runs = instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill.backfill_id}))
    assert 1 <= len(runs) <= 2
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)

    (local,) = materialize_days(
        ten_days,
        START,
        end,
        dg.DagsterInstance.ephemeral(),
        Settings(source_url=pg_url, store=str(tmp_path / "local")),
        days_per_run=DAYS,
    )
    assert local.success
    daemon_store, local_store = (
        DatasetStore(daemon_env["TAGFLOW_STORE"]),
        DatasetStore(tmp_path / "local"),
    )
    for dataset in DATED:
        for n in range(DAYS):
            day = START + timedelta(days=n)
            with open(daemon_store.partition_path(dataset, ten_days, day).path, "rb") as a:
                with open(local_store.partition_path(dataset, ten_days, day).path, "rb") as b:
                    assert a.read() == b.read(), f"{dataset} {day}"
