"""docs/analyst.ipynb runs, so it cannot rot: executed with nbclient against a small store (two
days of a generated tenant, written without Dagster), each reader's cell shows its result, and
each chart holds exactly the points the store has for its tag."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import nbformat
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from nbclient import NotebookClient

from tests.conftest import SMALL_PLANT_START
from tests.stores import materialise_from_source

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "analyst.ipynb"
ANALOG = "plant/area1/analog_00008"
STATE = "plant/area6/state_00013"
DAYS = [SMALL_PLANT_START, SMALL_PLANT_START + timedelta(days=1)]
PLOTLY = "application/vnd.plotly.v1+json"


@pytest.fixture(scope="module")
def analyst_store(small_plant, pg_url, tmp_path_factory) -> tuple[Path, str]:
    """A store holding two days of the small plant's first tenant, and that tenant."""
    tenant = small_plant.tenants[0].tenant
    root = tmp_path_factory.mktemp("analyst") / "store"
    materialise_from_source(pg_url, root, tenant, DAYS)
    return root, tenant


def rows(root: Path, dataset: str, tenant: str, tag_name: str, day: date | None = None) -> int:
    """Rows of one tag in a dataset of the store, read independently of the notebook."""
    wanted = (pc.field("tenant") == tenant) & (pc.field("tag_name") == tag_name)
    if day is not None:
        wanted &= pc.field("date") == day.isoformat()
    return ds.dataset(root / dataset, partitioning="hive").to_table(filter=wanted).num_rows


def outputs_by_tag(notebook) -> dict[str, list]:
    """The outputs of each code cell, keyed by its tag (every code cell has one)."""
    found = {}
    for cell in notebook.cells:
        if cell.cell_type == "code":
            (tag,) = cell.metadata["tags"]
            found[tag] = cell.outputs
    return found


def text_of(outputs: list) -> str:
    parts = []
    for output in outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif "data" in output:
            parts.append(output.data.get("text/plain", ""))
    return "\n".join(parts)


def figure_points(outputs: list) -> list[int]:
    """Points of each trace of the one plotly figure in `outputs`, from the first of its x and
    y arrays sent as a plain list (plotly sends numbers as typed binary arrays)."""
    (figure,) = [o.data[PLOTLY] for o in outputs if "data" in o and PLOTLY in o.data]
    return [
        next(len(trace[axis]) for axis in ("x", "y") if isinstance(trace.get(axis), list))
        for trace in figure["data"]
    ]


def test_analyst_notebook_reads_the_store_every_way_and_draws_its_tags(
    analyst_store, tmp_path, monkeypatch
):
    root, tenant = analyst_store
    monkeypatch.setenv("TAGFLOW_STORE", str(root))
    monkeypatch.setenv("TAGFLOW_TENANT", tenant)
    monkeypatch.delenv("TAGFLOW_SOURCE_URL", raising=False)  # the store only, no source
    # Jupyter's own files (connection files, its future path layout) stay out of $HOME.
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells), "commit it without outputs"

    # Raises CellExecutionError, with the cell and its traceback, if any cell fails.
    NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()

    outputs = outputs_by_tag(notebook)
    assert f"{tenant}: 2 days from {DAYS[0]:%Y-%m-%d}" in text_of(outputs["setup"])
    assert "bucket_start" in text_of(outputs["duckdb"])
    assert "hours" in text_of(outputs["polars"]) and "RUNNING" in text_of(outputs["polars"])
    assert "twa" in text_of(outputs["pandas"])

    # The band chart: max, min and twa, one point per 1-minute bucket of the first day.
    minutes = rows(root, "samples_1m", tenant, ANALOG, DAYS[0])
    assert minutes > 0
    assert figure_points(outputs["plot-samples"]) == [minutes] * 3
    # The timeline: one bar per span of the state tag (one trace per value).
    assert sum(figure_points(outputs["plot-spans"])) == rows(root, "spans", tenant, STATE)

    client = text_of(outputs["client"])
    assert re.search(r"^\d+ tags, e\.g\. plant/", client, re.MULTILINE), client
    assert len(re.findall(r"→", client)) == 5  # the five latest runs of the state tag
    assert ANALOG in client  # the daily averages' column
    # No annotation was exported to this store: the join runs on an empty table.
    assert "0 annotated spans, 0 of them" in text_of(outputs["annotations"])
