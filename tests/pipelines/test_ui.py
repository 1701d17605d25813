"""The Dagster UI: `dagster-webserver -w workspace.yaml` on a loopback port loads the tagflow code
location, and its GraphQL API reports the asset graph and the tenant × day partitions."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tagflow.assets.partitions import TENANT_DIMENSION
from tagflow.pipelines.instance import PG_URL_ENV, dagster_instance
from tagflow.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WEBSERVER = Path(sys.executable).parent / "dagster-webserver"
STARTUP_TIMEOUT_S = 45
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """dagster-webserver on a free loopback port with a fresh SQLite instance that knows two
    tenants; yields its base URL and stops it (and its code server) afterwards."""
    home = tmp_path_factory.mktemp("dagster_home")
    env = {key: value for key, value in os.environ.items() if key != PG_URL_ENV}
    # The code location needs a source URL to load; the UI never connects to it here.
    env.update(
        DAGSTER_HOME=str(home),
        TAGFLOW_STORE=str(home / "store"),
        TAGFLOW_SOURCE_URL="postgresql://nobody@127.0.0.1:1/none",
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(home))
        patch.delenv(PG_URL_ENV, raising=False)
        instance = dagster_instance(Settings.from_env())
        instance.add_dynamic_partitions(TENANT_DIMENSION, TENANTS)
        instance.dispose()
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
    assert set(by_key) == ASSET_KEYS
    groups = {key: node["groupName"] for key, node in by_key.items()}
    assert {groups["tags"], groups["transitions"], groups["carry_in"]} == {"extract"}
    assert {groups[key] for key in ASSET_KEYS - {"tags", "transitions", "carry_in"}} == {"derive"}
    for node in nodes:
        assert node["isPartitioned"] and node["kinds"]
        partitions = node["partitionDefinition"]
        assert partitions["type"] == "MULTIPARTITIONED"
        dimensions = {d["name"]: d for d in partitions["dimensionTypes"]}
        assert dimensions["tenant"]["type"] == "DYNAMIC"
        assert dimensions["tenant"]["dynamicPartitionsDefinitionName"] == TENANT_DIMENSION
        assert dimensions["date"]["type"] == "TIME_WINDOW"


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
