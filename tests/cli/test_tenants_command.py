"""`tagflow tenants`: the source's tenants, each with the last day materialised in the store, as
an operator sees them (a subprocess of the real command)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import dagster as dg

from tagflow.cli.runs import materialize_days
from tagflow.settings import Settings

TAGFLOW = Path(sys.executable).parent / "tagflow"


def test_tenants_lists_each_with_its_last_materialised_day(small_plant, pg_url, tmp_path):
    done, untouched = (t.tenant for t in small_plant.tenants)
    settings = Settings(source_url=pg_url, store=str(tmp_path))
    runs = materialize_days(
        done, date(2026, 3, 1), date(2026, 3, 3), dg.DagsterInstance.ephemeral(), settings
    )
    assert all(run.success for run in runs)
    env = {**os.environ, "TAGFLOW_SOURCE_URL": pg_url, "TAGFLOW_STORE": str(tmp_path)}
    result = subprocess.run(
        [str(TAGFLOW), "tenants"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    listed = dict(line.split("\t") for line in result.stdout.splitlines())
    assert listed[done] == "2026-03-02"
    assert listed[untouched] == "nothing materialised"
    assert pg_url not in result.stdout + result.stderr
