"""Dagster's own command line on tagflow's code location, as a Dagster user runs it: one dataset,
a set of them, or every asset of the day step for one tenant-day partition (key `date|tenant`),
against the embedded source, in a subprocess with its own DAGSTER_HOME and store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from tagflow.assets.checks import CHECK_NAME
from tagflow.assets.partitions import TENANT_DIMENSION, tenant_day_key
from tagflow.demo.synthetic_plant import PlantSummary
from tagflow.pipelines.instance import PG_URL_ENV, prepare_dagster_home
from tagflow.schemas.registry import DATASETS
from tagflow.settings import Settings
from tests.pipelines.test_ui import PROJECT_ROOT, home_instance

DAGSTER = Path(sys.executable).parent / "dagster"


def published(store: Path) -> set[str]:
    """The datasets with at least one published file in `store` (staged temp files excluded)."""
    return {path.relative_to(store).parts[0] for path in store.rglob("part-0.parquet")}


def check_verdicts(home: Path) -> dict[str, bool]:
    """Each dataset's audited_file_intact verdict in the home's one run, from its event log."""
    with home_instance(home) as instance:
        (run,) = instance.get_runs()
        records = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        evaluations = [
            record.event_log_entry.get_dagster_event().event_specific_data for record in records
        ]
    return {
        evaluation.asset_key.path[-1]: evaluation.passed
        for evaluation in evaluations
        if evaluation.check_name == CHECK_NAME
    }


def materialize(home: Path, store: Path, pg_url: str, select: str, partition: str):
    env = {key: value for key, value in os.environ.items() if key != PG_URL_ENV}
    env.update(DAGSTER_HOME=str(home), TAGFLOW_SOURCE_URL=pg_url, TAGFLOW_STORE=str(store))
    command = [str(DAGSTER), "asset", "materialize", "-m", "tagflow.pipelines.definitions"]
    command += ["--select", select, "--partition", partition]
    return subprocess.run(
        command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=240
    )


@pytest.fixture
def tenant_day(tmp_path: Path, small_plant: PlantSummary) -> tuple[Path, Path, str]:
    """A fresh home that knows the first small-plant tenant, its store, and the partition key
    of the tenant's first day."""
    home, store = tmp_path / "home", tmp_path / "store"
    home.mkdir()
    tenant = small_plant.tenants[0].tenant
    with home_instance(home) as instance:
        instance.add_dynamic_partitions(TENANT_DIMENSION, [tenant])
    key = str(tenant_day_key(tenant, small_plant.start.date().isoformat()))
    assert key == f"{small_plant.start.date().isoformat()}|{tenant}"
    return home, store, key


@pytest.mark.parametrize(
    "select, datasets",
    [
        ("spans", {"spans"}),
        ("tags,samples_1h", {"tags", "samples_1h"}),
        ("group:extract,group:compute", set(DATASETS)),
    ],
)
def test_dagster_asset_materialize_publishes_exactly_the_selection(
    tenant_day, pg_url, select, datasets
):
    home, store, key = tenant_day
    done = materialize(home, store, pg_url, select, key)
    assert done.returncode == 0, done.stderr[-3000:]
    assert published(store) == datasets
    # The staged files of the datasets left out are gone too.
    assert not [path for path in store.rglob("*") if path.is_file() and path.suffix != ".parquet"]
    # Their blocking checks ran and passed: the run's own record, not the log lines Dagster
    # printed (a CI run once showed 5 of its 11 evaluations on stderr).
    verdicts = check_verdicts(home)
    assert {dataset: verdicts.get(dataset) for dataset in datasets} == dict.fromkeys(datasets, True)


def test_dagster_refuses_every_asset_for_one_tenant_day_and_publishes_nothing(tenant_day, pg_url):
    """`*` also selects the month copies (tenant × month) and the span annotations: Dagster
    runs one partitioning per run, and says so (docs/operations.md names the selection of
    every dataset of a day, `group:extract,group:compute`)."""
    home, store, key = tenant_day
    done = materialize(home, store, pg_url, "*", key)
    assert done.returncode != 0
    assert "There is no PartitionsDefinition shared by all the provided assets" in done.stderr
    assert published(store) == set()


def test_dg_check_defs_loads_the_code_location(tmp_path: Path) -> None:
    """`dg check defs` (pyproject's [tool.dg]) loads the same definitions as `dagster dev`;
    loading them connects to no database, so any source URL does."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TAGFLOW_")}
    env.update(DAGSTER_HOME=str(tmp_path), TAGFLOW_SOURCE_URL="postgresql://tagflow@localhost/x")
    prepare_dagster_home(Settings(), tmp_path)  # as every tagflow command does: no telemetry
    done = subprocess.run(
        [str(DAGSTER.with_name("dg")), "check", "defs"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "All definitions loaded successfully" in output
    assert "warning" not in output.lower(), output
