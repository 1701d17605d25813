"""Store hygiene through Dagster (issue 17, item 5): a zero-byte or truncated partition fails
its asset check with a verdict that says so, and every run sweeps its own tenant's stale temp
files (those of killed runs) before it writes, leaving fresh ones and other tenants' alone, and
the stale spill folders of killed runs' reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from tagflow.assets.partitions import tenant_day_key
from tagflow.cli.runs import materialize_days
from tagflow.demo.synthetic_plant import generate_plant
from tagflow.io_managers import DatasetStore
from tagflow.pipelines.definitions import build_definitions
from tagflow.settings import Settings
from tagflow.source.day_stream import SPILL_PREFIX
from tests.conftest import drop_tenant, unique_tenant_name

DAY = date(2026, 3, 2)
HOURS = 3600


@pytest.fixture(scope="module")
def tenants(pg_url, admin_conn):
    """Two small generated tenants with days 03-01 and 03-02."""
    names = [unique_tenant_name("hygiene"), unique_tenant_name("hygiene")]
    generate_plant(pg_url, names, tags=14, days=2, start=date(2026, 3, 1), seed=5,
                   rows_per_tag_day=20)  # fmt: skip
    yield names
    for name in names:
        drop_tenant(admin_conn, name)


def materialise(tenant: str, instance: dg.DagsterInstance, settings: Settings) -> None:
    runs = materialize_days(tenant, DAY, date(2026, 3, 3), instance, settings)
    assert all(run.success for run in runs)


def file_of(root: Path, dataset: str, tenant: str) -> Path:
    day = None if dataset == "tags" else DAY
    return Path(DatasetStore(root).partition_path(dataset, tenant, day).path)


def test_a_zero_byte_or_truncated_file_fails_its_check(tenants, pg_url, tmp_path):
    tenant = tenants[0]
    instance = dg.DagsterInstance.ephemeral()
    settings = Settings(source_url=pg_url, store=str(tmp_path))
    materialise(tenant, instance, settings)
    file_of(tmp_path, "tags", tenant).write_bytes(b"")
    file_of(tmp_path, "spans", tenant).write_bytes(b"")
    transitions = file_of(tmp_path, "transitions", tenant)
    transitions.write_bytes(transitions.read_bytes()[:100])
    damaged = {"tags", "spans", "transitions"}

    job = build_definitions(settings).resolve_job_def("all_assets")
    checks_only = job.get_subset(
        asset_selection=set(),
        asset_check_selection={
            dg.AssetCheckKey(dg.AssetKey(name), "audited_file_intact")
            for name in (*damaged, "carry_in")
        },
    )
    result = checks_only.execute_in_process(
        partition_key=tenant_day_key(tenant, DAY.isoformat()),
        instance=instance,
        raise_on_error=False,
    )
    verdicts = {
        e.asset_key.path[-1]: (e.passed, e.metadata["verdict"].value)
        for e in result.get_asset_check_evaluations()
    }
    assert verdicts["carry_in"] == (True, "audited when written; the file is intact")
    for name in damaged:
        assert verdicts[name] == (
            False,
            "the partition file is not a readable Parquet file (truncated or corrupted)",
        ), name
        assert str(tmp_path) not in verdicts[name][1]


def stale_temp(folder: Path, uuid: str, age_s: float) -> Path:
    path = folder / f".part-0.parquet.{uuid}.tmp"
    path.write_bytes(b"half a file")
    moment = time.time() - age_s
    os.utime(path, (moment, moment))
    return path


def test_a_run_sweeps_its_tenants_stale_temp_files(tenants, pg_url, tmp_path):
    own, other = tenants
    instance = dg.DagsterInstance.ephemeral()
    settings = Settings(source_url=pg_url, store=str(tmp_path))
    for tenant in tenants:
        materialise(tenant, instance, settings)
    # What killed runs left: old ones of both tenants, and one written a minute ago (a run
    # that may still be writing it).
    spans_folder = file_of(tmp_path, "spans", own).parent
    stale = [
        stale_temp(spans_folder, "a" * 32, 7 * HOURS),
        stale_temp(file_of(tmp_path, "tags", own).parent, "b" * 32, 30 * HOURS),
    ]
    fresh = stale_temp(spans_folder, "c" * 32, 60)
    others = stale_temp(file_of(tmp_path, "spans", other).parent, "d" * 32, 7 * HOURS)

    materialise(own, instance, settings)
    assert not any(path.exists() for path in stale)
    assert fresh.exists() and others.exists()
    # A shorter age (TAGFLOW_TEMP_MAX_AGE_S) sweeps the younger one too.
    materialise(own, instance, settings.replace(temp_max_age_s=30))
    assert not fresh.exists() and others.exists()
    assert sorted(p.name for p in spans_folder.iterdir()) == ["part-0.parquet"]


KILLED_MID_DAY = """
import os, signal, sys
from datetime import UTC, datetime
from tagflow.source.day_stream import raw_day_chunks
from tagflow.source.fingerprints import RowsFingerprint
from tagflow.source.tenant_source import TenantSource
url, tenant = sys.argv[1], sys.argv[2]
ids = TenantSource(url).read_tags(tenant).column("tag_id").to_numpy()
start, end = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC)
chunks = raw_day_chunks(url, tenant, ids, start, end, 1000, RowsFingerprint())
next(chunks)  # the day is spilled: its folder holds its rows
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_run_removes_the_spill_folders_of_killed_runs(tenants, pg_url, tmp_path):
    """A run killed while it reads a day leaves its spill folder in the temp folder (kill -9
    skips every cleanup); a later run removes those older than TAGFLOW_TEMP_MAX_AGE_S and
    leaves a young one (it may be a live run's)."""
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    for _ in range(2):
        killed = subprocess.run(
            [sys.executable, "-c", KILLED_MID_DAY, pg_url, tenants[0]], env=env, timeout=120
        )
        assert killed.returncode == -signal.SIGKILL
    old, young = sorted(temp.glob(f"{SPILL_PREFIX}*"))
    assert any(old.iterdir()), "the killed run left no spilled rows: nothing was tested"
    os.utime(old, (time.time() - 7 * HOURS, time.time() - 7 * HOURS))

    done = subprocess.run(
        [sys.executable, "-m", "tagflow.cli", "materialize", "--tenant", tenants[0],
         "--start", DAY.isoformat(), "--end", "2026-03-03"],
        env={**env, "DAGSTER_HOME": str(tmp_path / "home"), "TAGFLOW_STORE": str(tmp_path / "s"),
             "TAGFLOW_SOURCE_URL": pg_url, "TAGFLOW_TEMP_MAX_AGE_S": str(6 * HOURS)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(temp.glob(f"{SPILL_PREFIX}*")) == [young]
