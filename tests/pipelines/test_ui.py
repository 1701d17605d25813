"""The Dagster UI: `dagster-webserver -w workspace.yaml` on a loopback port loads the tagflow code
location, and its GraphQL API reports the asset graph, the tenant × day partitions and, after a
real run, Dagster's standard metadata of each dataset (row count, relation, column schema)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pyarrow.parquet as pq
import pytest

from tagflow.assets.partitions import TENANT_DIMENSION, tenant_day_key
from tagflow.cli.runs import materialize_days
from tagflow.demo.synthetic_plant import PlantSummary
from tagflow.io_managers import DatasetStore
from tagflow.pipelines.instance import PG_URL_ENV, dagster_instance
from tagflow.schemas.registry import ANNOTATION_DATASETS
from tagflow.schemas.registry import dataset as registered
from tagflow.settings import Settings
from tests.conftest import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WEBSERVER = Path(sys.executable).parent / "dagster-webserver"
# A bound only a hang exceeds, on a loaded machine.
STARTUP_TIMEOUT_S = 120
TENANTS = ["acme", "globex"]
START_DATE = Settings().start_date.isoformat()
SECOND_DAY = (Settings().start_date + timedelta(days=1)).isoformat()
ASSET_KEYS = {
    "tags",
    "transitions",
    "carry_in",
    "spans",
    "samples_1m",
    "samples_1h",
    "samples_1d",
    "samples_str_1m",
    "samples_str_1h",
    "samples_str_1d",
}

ASSET_NODES = """
{ assetNodes {
    assetKey { path } groupName kinds isPartitioned
    partitionDefinition { type dimensionTypes { name type dynamicPartitionsDefinitionName } }
} }
"""
TENANT_KEYS = """
query ($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) {
  ... on AssetNode { partitionKeysByDimension(startIdx: 0, endIdx: 2) { name partitionKeys } }
} }
"""
PARTITION_SET = """
query ($name: String!) { partitionSetOrError(
    repositorySelector: {repositoryName: "__repository__", repositoryLocationName: "tagflow"},
    partitionSetName: $name) {
  __typename
  ... on PartitionSet { pipelineName partitionsOrError(limit: 4) {
    __typename ... on Partitions { results { name } } } }
} }
"""
# What the catalog reads of a partition's latest materialisation: the Columns tab takes the
# `dagster/column_schema` TableSchemaMetadataEntry of the materialisation's metadataEntries
# (falling back to the definition's), and the overview plots `dagster/row_count`.
LATEST_MATERIALIZATION = """
query ($path: [String!]!, $partition: String!) { assetNodeOrError(assetKey: {path: $path}) {
  ... on AssetNode { assetMaterializations(partitions: [$partition], limit: 1) {
    partition
    metadataEntries {
      __typename label
      ... on IntMetadataEntry { intValue intRepr }
      ... on TextMetadataEntry { text }
      ... on TableSchemaMetadataEntry { schema { columns { name type description } } }
    }
  } }
} }
"""


@contextmanager
def running_webserver(home: Path, store: Path) -> Iterator[str]:
    """dagster-webserver on a free loopback port over the SQLite instance in `home` and the
    dataset store `store`; yields its base URL and stops it (and its code server) afterwards."""
    env = {key: value for key, value in os.environ.items() if key != PG_URL_ENV}
    # The code location needs a source URL to load; the UI never connects to it here.
    env.update(
        DAGSTER_HOME=str(home),
        TAGFLOW_STORE=str(store),
        TAGFLOW_SOURCE_URL="postgresql://nobody@127.0.0.1:1/none",
    )
    port = free_port()
    log = (home / "webserver.log").open("wb")
    server = subprocess.Popen(
        [str(WEBSERVER), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the code server goes down with it
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, server, home / "webserver.log")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@contextmanager
def home_instance(home: Path) -> Iterator[dg.DagsterInstance]:
    """The SQLite instance of a fresh DAGSTER_HOME, as the webserver started there will see it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(home))
        patch.delenv(PG_URL_ENV, raising=False)
        instance = dagster_instance(Settings.from_env())
        try:
            yield instance
        finally:
            instance.dispose()


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The webserver over a fresh instance that knows two tenants and has no runs."""
    home = tmp_path_factory.mktemp("dagster_home")
    with home_instance(home) as instance:
        instance.add_dynamic_partitions(TENANT_DIMENSION, TENANTS)
    with running_webserver(home, home / "store") as url:
        yield url


@dataclass(frozen=True)
class Materialised:
    """A webserver whose instance recorded the run of one real tenant-day."""

    url: str
    store: DatasetStore
    tenant: str
    day: date


@pytest.fixture(scope="module")
def materialised(
    tmp_path_factory: pytest.TempPathFactory, pg_url: str, small_plant: PlantSummary
) -> Iterator[Materialised]:
    """Every asset of one small-plant tenant-day materialised into the instance of a fresh home
    (its own, so the tenants the other tests count stay two), then the webserver over it."""
    home = tmp_path_factory.mktemp("dagster_home_materialised")
    store = home / "store"
    tenant, day = small_plant.tenants[0].tenant, small_plant.start.date()
    with home_instance(home) as instance:
        settings = Settings(source_url=pg_url, store=str(store))
        runs = materialize_days(tenant, day, day + timedelta(days=1), instance, settings)
        assert [run.success for run in runs] == [True]
    with running_webserver(home, store) as url:
        yield Materialised(url, DatasetStore(store), tenant, day)


def wait_until_serving(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"dagster-webserver exited with {server.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"dagster-webserver not serving after {STARTUP_TIMEOUT_S} s:\n{log.read_text()}")


def graphql(url: str, query: str, **variables: Any) -> dict[str, Any]:
    response = httpx.post(
        f"{url}/graphql", json={"query": query, "variables": variables}, timeout=30
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def test_webserver_serves_every_asset_in_its_group(webserver):
    nodes = graphql(webserver, ASSET_NODES)["assetNodes"]
    by_key = {"/".join(node["assetKey"]["path"]): node for node in nodes}
    copies = {f"month_copies/{key}" for key in ASSET_KEYS - {"tags", "carry_in"}}
    annotations = set(ANNOTATION_DATASETS)
    assert set(by_key) == ASSET_KEYS | copies | annotations
    for key in annotations:  # written per tenant, whole: no day dimension
        node = by_key.pop(key)
        assert node["groupName"] == "annotations"
        assert node["partitionDefinition"]["type"] == "DYNAMIC"
    groups = {key: node["groupName"] for key, node in by_key.items()}
    assert {groups["tags"], groups["transitions"], groups["carry_in"]} == {"extract"}
    assert {groups[key] for key in ASSET_KEYS - {"tags", "transitions", "carry_in"}} == {"compute"}
    assert {groups[key] for key in copies} == {"serve"}
    for key, node in by_key.items():
        assert node["isPartitioned"] and node["kinds"]
        partitions = node["partitionDefinition"]
        assert partitions["type"] == "MULTIPARTITIONED"
        dimensions = {d["name"]: d for d in partitions["dimensionTypes"]}
        assert dimensions["tenant"]["type"] == "DYNAMIC"
        assert dimensions["tenant"]["dynamicPartitionsDefinitionName"] == TENANT_DIMENSION
        assert dimensions["month" if key in copies else "date"]["type"] == "TIME_WINDOW"


def test_webserver_reports_tenant_and_day_partition_keys(webserver):
    node = graphql(webserver, TENANT_KEYS, path=["spans"])["assetNodeOrError"]
    keys = {d["name"]: d["partitionKeys"] for d in node["partitionKeysByDimension"]}
    assert keys["tenant"] == TENANTS
    assert keys["date"][:2] == [START_DATE, SECOND_DAY]


def test_webserver_reports_the_partition_set_of_the_asset_job(webserver):
    data = graphql(webserver, PARTITION_SET, name="all_assets_partition_set")
    partition_set = data["partitionSetOrError"]
    assert partition_set["__typename"] == "PartitionSet"
    assert partition_set["pipelineName"] == "all_assets"
    names = [p["name"] for p in partition_set["partitionsOrError"]["results"]]
    # Multi-partition keys are `date|tenant`, day-major.
    assert names == [f"{day}|{tenant}" for day in (START_DATE, SECOND_DAY) for tenant in TENANTS]


def test_webserver_shows_dagsters_standard_metadata_of_a_materialised_partition(materialised):
    """Row count, relation identifier and columns of every dataset's latest materialisation,
    as the catalog reads them, match the published Parquet file."""
    partition = str(tenant_day_key(materialised.tenant, materialised.day.isoformat()))
    for dataset in sorted(ASSET_KEYS):
        data = graphql(
            materialised.url, LATEST_MATERIALIZATION, path=[dataset], partition=partition
        )
        [event] = data["assetNodeOrError"]["assetMaterializations"]
        assert event["partition"] == partition
        entries = {entry["label"]: entry for entry in event["metadataEntries"]}
        day = materialised.day if registered(dataset).dated else None
        path = materialised.store.partition_path(dataset, materialised.tenant, day)
        written = pq.ParquetFile(str(path))

        rows = entries["dagster/row_count"]
        assert rows["__typename"] == "IntMetadataEntry"
        assert int(rows["intRepr"]) == rows["intValue"] == written.metadata.num_rows

        relation = entries["dagster/relation_identifier"]
        assert relation["__typename"] == "TextMetadataEntry"
        # The partition's place in the store, relative to its root (which stays private).
        assert str(path).endswith("/" + relation["text"] + "/part-0.parquet")
        assert relation["text"].startswith(f"{dataset}/tenant={materialised.tenant}")
        assert str(materialised.store.root) not in relation["text"]

        columns = entries["dagster/column_schema"]
        assert columns["__typename"] == "TableSchemaMetadataEntry"
        # The columns of the file, typed as the dataset's one Arrow schema names them (a file
        # read back spells a map's item field its own way: `map<string, double ('held_s')>`).
        schema = registered(dataset).schema
        assert [c["name"] for c in columns["schema"]["columns"]] == written.schema_arrow.names
        assert [c["type"] for c in columns["schema"]["columns"]] == [
            str(field.type) for field in schema
        ]
        # Each column described as the registry describes it.
        assert [c["description"] for c in columns["schema"]["columns"]] == [
            registered(dataset).column_description(field.name) for field in schema
        ]


DAGSTER = Path(sys.executable).parent / "dagster"
FRESHNESS_TIMEOUT_S = 120
PARTITIONS_AND_FRESHNESS = """
query ($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) {
  ... on AssetNode {
    partitionStats { numMaterialized numPartitions numFailed }
    internalFreshnessPolicy {
      __typename ... on CronFreshnessPolicy { deadlineCron lowerBoundDeltaSeconds timezone }
    }
    freshnessStatusInfo { freshnessStatus }
  }
} }
"""


@contextmanager
def running_dagster_dev(home: Path, env: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """`dagster dev -w workspace.yaml` as the README starts it (the webserver and the daemon),
    on a free loopback port; yields its URL and log, and stops it afterwards."""
    port = free_port()
    log_path = home / "dagster_dev.log"
    log = log_path.open("wb")
    command = [str(DAGSTER), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, server, log_path)
        yield url, log_path
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_dagster_dev_shows_the_demos_days_materialised_and_fresh(
    tmp_path: Path, pg_url: str, small_plant: PlantSummary
):
    """After a demo-like run (one tenant's three days), `dagster dev` started as the demo prints
    it, with the partitions spanning just the demo's days, counts them all materialised, and its
    freshness daemon finds every dataset of the day fresh; the asset's page in a browser shows
    both."""
    home, store = tmp_path / "home", tmp_path / "store"
    tenant, first = small_plant.tenants[0].tenant, small_plant.start.date()
    days = (small_plant.end.date() - first).days
    with home_instance(home) as instance:
        settings = Settings(
            source_url=pg_url, store=str(store), start_date=first, end_date=small_plant.end.date()
        )
        runs = materialize_days(tenant, first, small_plant.end.date(), instance, settings)
        assert [run.success for run in runs] == [True] * days
    env = {key: value for key, value in os.environ.items() if key != PG_URL_ENV}
    env.update(
        DAGSTER_HOME=str(home),
        TAGFLOW_STORE=str(store),
        TAGFLOW_SOURCE_URL=pg_url,
        TAGFLOW_START_DATE=first.isoformat(),
        TAGFLOW_END_DATE=small_plant.end.date().isoformat(),
    )
    with running_dagster_dev(home, env) as (url, log):
        deadline = time.monotonic() + FRESHNESS_TIMEOUT_S
        while True:
            node = graphql(url, PARTITIONS_AND_FRESHNESS, path=["spans"])["assetNodeOrError"]
            status = node["freshnessStatusInfo"]["freshnessStatus"]
            if status != "UNKNOWN" or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert node["partitionStats"] == {
            "numMaterialized": days,
            "numPartitions": days,
            "numFailed": 0,
        }
        assert node["internalFreshnessPolicy"] == {
            "__typename": "CronFreshnessPolicy",
            "deadlineCron": "0 6 * * *",
            "lowerBoundDeltaSeconds": 6 * 3600,
            "timezone": "UTC",
        }
        assert status == "HEALTHY"
        overview, partitions_tab = page_texts(
            url, ["/assets/spans", "/assets/spans?view=partitions"], tmp_path
        )
    # What a person sees on the asset's page: the freshness policy passing, and every one of
    # the partitions materialised.
    assert "Freshness policy\nPassing" in overview, overview
    for shown in (f"{days} Partitions", f"Materialized ({days})", "Missing (0)", "Failed (0)"):
        assert shown in partitions_tab, partitions_tab
    # No warning of tagflow's making while it serves: Dagster's own note that `dg dev`
    # supersedes `dagster dev` is the only one (the README starts `dagster dev`; `dg dev` works
    # too). Once the test interrupts it, Dagster's shutdown may race its code server ("exited
    # with code 0. Restarting"), which is Dagster's and after the use.
    lines = log.read_text().splitlines()
    serving = next(
        (lines[:k] for k, line in enumerate(lines) if "KeyboardInterrupt received" in line), lines
    )
    warned = [
        line for line in serving if "warn" in line.lower() and "SupersessionWarning" not in line
    ]
    assert warned == [], "\n".join(lines)


def page_texts(url: str, paths: list[str], screenshots: Path) -> list[str]:
    """The text Dagster's UI shows on each page of `paths`, in Debian's chromium (a screenshot
    of each is left in `screenshots` for a person to look at)."""
    from playwright.sync_api import sync_playwright

    from tests.readapi.test_ui_page import CHROMIUM_ARGS, WAIT_MS, chromium

    texts = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium()), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for n, path in enumerate(paths):
                page.goto(f"{url}{path}", wait_until="networkidle", timeout=WAIT_MS * 4)
                page.wait_for_timeout(3000)
                page.screenshot(path=str(screenshots / f"page-{n}.png"), full_page=True)
                texts.append(page.inner_text("body"))
        finally:
            browser.close()
    return texts
