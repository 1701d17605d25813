"""The base distribution is the read client: installed alone in a fresh virtual environment
(through the lock), it reads a materialised store with the same answers as the full install,
and imports no Dagster, database driver, audit library or web server on the way."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tagflow.readapi import Client

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ["dagster", "pandera", "polars", "sqlalchemy", "psycopg", "adbc_driver_manager",
         "pgserver", "fastapi", "uvicorn", "plotly", "typer", "yaml", "duckdb"]  # fmt: skip
WINDOW = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC))

READ = textwrap.dedent(
    """
    import json, sys
    from datetime import datetime, timezone
    from tagflow.readapi import Client
    store, tenant, tag = sys.argv[1:4]
    window = (datetime(2026, 3, 1, tzinfo=timezone.utc), datetime(2026, 3, 4, tzinfo=timezone.utc))
    with Client(store=store, tenant=tenant) as client:
        spans = client.get_spans(tag, window)
        frame = client.sample_metric_data("1h", tag_names=[tag], time_range=window)
    heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[4])))
    print(json.dumps({
        "spans": [[s.id, s.raw_begin_at.isoformat(), repr(s.value)] for s in spans],
        "twa_sum": float(frame[tag].sum()), "rows": len(frame), "heavy": heavy,
    }))
    """
)


@pytest.fixture(scope="module")
def lean_python(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("lean") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), str(ROOT)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if install.returncode != 0:
        pytest.fail(f"the base install failed:\n{install.stderr[-3000:]}")
    return python


def test_the_base_install_reads_a_store_as_the_full_install_does(lean_python, plant, tmp_path):
    tenant = plant.tenants[0]
    with Client(store=plant.root, tenant=tenant) as client:
        tag = next(t.name for t in client.get_tags() if t.name.startswith("plant/area1/analog"))
        spans = client.get_spans(tag, WINDOW)
        frame = client.sample_metric_data("1h", tag_names=[tag], time_range=WINDOW)
    # Run outside the checkout: `python -c` puts the working directory first on the path, where
    # the checkout's tagflow/ folder would hide the installed package.
    result = subprocess.run(
        [str(lean_python), "-c", READ, str(plant.root), tenant, tag, json.dumps(HEAVY)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lean = json.loads(result.stdout)
    assert lean["heavy"] == []
    assert lean["spans"] == [[s.id, s.raw_begin_at.isoformat(), repr(s.value)] for s in spans]
    assert lean["rows"] == len(frame) > 0
    assert lean["twa_sum"] == float(frame[tag].sum())


def test_the_base_install_says_which_extra_the_command_needs(lean_python):
    command = lean_python.parent / "tagflow"
    result = subprocess.run([str(command), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "the tagflow command needs the pipeline extra: pip install 'tagflow[pipeline]'"
    ]
