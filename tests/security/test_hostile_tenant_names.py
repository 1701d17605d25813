"""Hostile tenant names at every door that takes one: DatasetStore, materialize_days, the
Python client (store and HTTP) and the HTTP service's tenant header. Each gives a typed error
before any file, connection or request is made, and leaves the store (and what is next to it)
exactly as it was. The CLI and crafted tag names are covered in tests/pipelines and
tests/readapi/test_security.py; role-level isolation in tests/source/test_extract.py."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import dagster as dg
import httpx
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tagflow.cli.runs import materialize_days
from tagflow.errors import InvalidName, UnknownTenant
from tagflow.io_managers import DatasetStore
from tagflow.readapi import Client
from tagflow.readapi.server.app import create_app
from tagflow.readapi.server.keys import KeyStore
from tagflow.schemas.registry import DATASETS
from tagflow.settings import Settings
from tests.readapi.conftest import BackgroundServer

# A URL no server listens on: reaching it would raise SourceUnavailable, not InvalidName.
DEAD_SOURCE = "postgresql://nobody@/db?host=/nonexistent-tagflow-socket-dir"
DAY = date(2026, 3, 2)

FRAGMENTS = [
    "x; DROP SCHEMA acme CASCADE; --",
    "acme' OR '1'='1",
    'acme"; SELECT 1; --',
    "../acme",
    "..",
    "acme/../../etc",
    "tenant=acme/date=2026-03-02",
    "%2e%2e%2facme",
    "acme%00",
    "acme\x00evil",
    "acme\n",
    " acme",
    "",
    "9acme",
    "a" * 64,
    "a" * 100_000,
    "acmé",
    "ac\u200bme",  # zero-width space
    "ACME\\..\\x",
]
hostile_names = st.one_of(
    st.sampled_from(FRAGMENTS),
    # Any text with at least one character outside the tenant alphabet.
    st.text(min_size=1, max_size=80).filter(lambda s: not s.isascii() or not s.isidentifier()),
    st.builds(
        lambda a, b: a + b,
        st.sampled_from(["acme", "t_1", ""]),
        st.sampled_from(["/", "..", "%", "'", '"', ";", "\x00", "-", " ", "*", "?"]),
    ),
)
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and mtime: equal snapshots, untouched tree."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
    }


@pytest.fixture(scope="module")
def world():
    """A directory holding a store with one legitimate partition and a file beside it."""
    with tempfile.TemporaryDirectory(prefix="tagflow-hostile-") as folder:
        base = Path(folder)
        store = DatasetStore(base / "store")
        store.write("tags", "legit", None, DATASETS["tags"].schema.empty_table())
        (base / "outside.txt").write_text("must not change")
        yield base


def is_valid_tenant(name: str) -> bool:
    try:
        from tagflow.names import validate_tenant_name

        validate_tenant_name(name)
        return True
    except InvalidName:
        return False


@SETTINGS
@given(name=hostile_names)
def test_store_refuses_hostile_tenants_and_touches_nothing(world, name):
    if is_valid_tenant(name):
        return  # the random text strategy can produce a valid identifier now and then
    before = snapshot(world)
    store = DatasetStore(world / "store")
    table = DATASETS["tags"].schema.empty_table()
    for call in (
        lambda: store.write("tags", name, None, table),
        lambda: store.write("spans", name, DAY, DATASETS["spans"].schema.empty_table()),
        lambda: store.read("spans", name, DAY),
        lambda: store.exists("tags", name),
        lambda: store.materialised_days("spans", name),
        lambda: store.read_tag_rows("spans", name, DAY, ["x"]),
    ):
        with pytest.raises(InvalidName) as error:
            call()
        assert str(world) not in str(error.value)  # messages never name the store's path
    assert snapshot(world) == before


@SETTINGS
@given(name=hostile_names)
def test_materialize_days_refuses_hostile_tenants_before_any_connection(world, name):
    if is_valid_tenant(name):
        return
    before = snapshot(world)
    instance = dg.DagsterInstance.ephemeral()
    # InvalidName, not SourceUnavailable: the dead source URL was never dialled.
    with pytest.raises(InvalidName):
        materialize_days(
            name,
            DAY,
            date(2026, 3, 3),
            instance,
            Settings(source_url=DEAD_SOURCE, store=str(world / "store")),
        )
    assert instance.get_runs() == []
    assert not instance.has_dynamic_partition("tenant", name)
    assert snapshot(world) == before


@SETTINGS
@given(name=hostile_names)
def test_client_refuses_hostile_tenants_before_any_read_or_request(world, name):
    if is_valid_tenant(name) or name == "":
        return  # an empty tenant means "none given" to the client (the key names it)
    before = snapshot(world)
    with pytest.raises(InvalidName):
        Client(store=world / "store", tenant=name)
    # Port 9 (discard) on loopback: a request would fail with a connection error instead.
    with pytest.raises(InvalidName):
        Client(host="http://127.0.0.1:9", tenant=name, api_key="k")
    assert snapshot(world) == before


@pytest.mark.parametrize("name", ["public", "information_schema", "pg_catalog", "pg_toast"])
def test_valid_looking_system_schemas_are_unknown_tenants(pg_url, name, tmp_path):
    """Syntactically valid names of schemas that are not tenants never become partitions."""
    instance = dg.DagsterInstance.ephemeral()
    with pytest.raises(UnknownTenant):
        materialize_days(
            name, DAY, date(2026, 3, 3), instance, Settings(source_url=pg_url, store=str(tmp_path))
        )
    assert instance.get_runs() == [] and list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def service(world):
    """The read service over the world's store with a key for tenant 'legit' only."""
    keys = KeyStore(world / "keys" / "api_keys.json")
    key, _ = keys.add("legit")
    with BackgroundServer(create_app(world / "store", world / "keys" / "api_keys.json", None)) as s:
        yield s.url, key


# Headers carry visible ASCII only; everything else is refused by the HTTP client itself.
header_names = st.one_of(
    st.sampled_from(
        [f for f in FRAGMENTS if f.isascii() and f.isprintable() and f and f == f.strip()]
    ),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=300),
)


@settings(max_examples=40, deadline=None)
@given(name=header_names)
def test_http_tenant_header_hostile_values_get_the_plain_401(service, world, name):
    url, key = service
    if name == "legit":
        return
    before = snapshot(world / "store")
    wrong_key = httpx.get(f"{url}/v1/tags", headers={"Authorization": "Bearer nope"})
    answer = httpx.get(
        f"{url}/v1/tags", headers={"Authorization": f"Bearer {key}", "X-Tagflow-Tenant": name}
    )
    # Indistinguishable from a wrong key: same status, same body; no trace, path or SQL.
    assert (answer.status_code, answer.json()) == (wrong_key.status_code, wrong_key.json())
    assert answer.status_code == 401
    for leak in ("Traceback", str(world), "SELECT", 'File "'):
        assert leak not in answer.text
    assert snapshot(world / "store") == before


@pytest.mark.parametrize("name", ["../../etc"])  # one: each CLI start costs ~5 s
def test_cli_refuses_hostile_tenants_without_a_trace_or_a_store(name, tmp_path):
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "TAGFLOW_SOURCE_URL": DEAD_SOURCE,
    }
    command = [
        sys.executable,
        "-m",
        "tagflow.cli",
        "materialize",
        "--tenant",
        name,
        "--start",
        "2026-03-02",
        "--end",
        "2026-03-03",
        "--store",
        str(tmp_path / "s"),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "invalid tenant name" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "s").exists()


def test_hostile_table_content_cannot_escape_its_partition(tmp_path):
    """The partition path comes from the validated tenant and the date only: a table whose
    tag names look like paths is stored in its own partition file like any other."""
    store = DatasetStore(tmp_path / "store")
    schema = DATASETS["tags"].schema
    rows = {name: [None] * 2 for name in schema.names}
    rows["tag_id"] = [1, 2]
    rows["tag_name"] = ["../../outside", "tenant=other/part-0.parquet"]
    store.write("tags", "legit", None, pa.table(rows).cast(schema))
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["store/tags/tenant=legit/part-0.parquet"]
