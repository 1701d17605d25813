"""Fixtures of the read API tests: the small plant materialised once per session into a temp
store, an API keys file for its two tenants, the HTTP service on a loopback port, and the
brute-force reference (tests/transforms/reference.py) fed with each tenant's full history
read straight from the source tables."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import uvicorn
from psycopg import sql

from tagflow.cli.runs import materialize_days
from tagflow.demo.synthetic_plant import PlantSummary
from tagflow.io_managers import DatasetStore
from tagflow.readapi.server.app import create_app
from tagflow.readapi.server.keys import KeyStore
from tagflow.schemas.registry import DATED
from tagflow.settings import Settings
from tagflow.transforms.columns import datetime_to_us
from tests.transforms.reference import RawRow, Reference, Tag


def add_line_flow(admin_conn: psycopg.Connection, tenant: str) -> None:
    """One numeric tag `line/flow` (id 5) in `tenant`: born 2026-03-01 00:00 UTC, 1.0 from
    03-01 06:00 and 2.0 from 03-02 06:00."""
    s = sql.Identifier(tenant)
    insert = "INSERT INTO {}.tag_names (id, normalized_name, birth_at) VALUES (5, 'line/flow', %s)"
    admin_conn.execute(sql.SQL(insert).format(s), (datetime(2026, 3, 1, tzinfo=UTC),))
    for day, value in ((1, 1.0), (2, 2.0)):
        time = datetime(2026, 3, day, 6, tzinfo=UTC)
        admin_conn.execute(
            sql.SQL("INSERT INTO {}.tag_data VALUES (5, %s, %s)").format(s), (time, value)
        )


def datasets_read(monkeypatch: pytest.MonkeyPatch, method: str) -> list[str]:
    """The datasets that DatasetStore.`method` (read_tag_rows, read_month_rows) is asked for
    from now on in the test, in call order."""
    reads: list[str] = []
    read = getattr(DatasetStore, method)

    def spy(self, dataset, *args, **kwargs):
        reads.append(dataset)
        return read(self, dataset, *args, **kwargs)

    monkeypatch.setattr(DatasetStore, method, spy)
    return reads


@dataclass(frozen=True)
class Plant:
    """The materialised small plant: store root, the two tenants and their API keys."""

    root: Path
    summary: PlantSummary

    @property
    def tenants(self) -> list[str]:
        return [t.tenant for t in self.summary.tenants]

    def key(self, tenant: str) -> str:
        return self.summary.api_keys[tenant]


@pytest.fixture(scope="session")
def plant(small_plant: PlantSummary, pg_url: str, tmp_path_factory) -> Plant:
    """Both tenants × 3 days (2026-03-01..03) materialised through Dagster."""
    root = tmp_path_factory.mktemp("readapi-store")
    instance = dg.DagsterInstance.ephemeral()
    start, end = small_plant.start.date(), small_plant.end.date()
    for tenant in small_plant.tenants:
        runs = materialize_days(
            tenant.tenant, start, end, instance, Settings(source_url=pg_url, store=str(root))
        )
        assert all(run.success for run in runs)
    return Plant(root, small_plant)


def copy_days(source_root: Path, target_root: Path, tenant: str, days: list[date]) -> None:
    """A store holding only `days` of `tenant` (and its tags), copied through DatasetStore."""
    source, target = DatasetStore(source_root), DatasetStore(target_root)
    target.write("tags", tenant, None, source.read("tags", tenant))
    for dataset in DATED:
        for day in days:
            target.write(dataset, tenant, day, source.read(dataset, tenant, day))


@pytest.fixture(scope="session")
def keys_file(plant: Plant, tmp_path_factory) -> Path:
    """A keys file granting each plant tenant its demo API key."""
    path = tmp_path_factory.mktemp("keys") / "api_keys.json"
    keys = KeyStore(path)
    for tenant in plant.tenants:
        keys.add(tenant, plant.key(tenant))
    return path


class BackgroundServer:
    """uvicorn serving an app on a free loopback port, in a thread of this process."""

    def __init__(self, app) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


@pytest.fixture(scope="session")
def service_url(plant: Plant, keys_file: Path, pg_url: str) -> Iterator[str]:
    """The read service over the plant's store, with source fallback, on a loopback port."""
    app = create_app(plant.root, keys_file, pg_url)
    with BackgroundServer(app) as server:
        yield server.url


def source_history(conn: psycopg.Connection, tenant: str) -> tuple[list[RawRow], list[Tag]]:
    """Every source row and tag of `tenant`, for the brute-force reference."""
    s = sql.Identifier(tenant)
    tags = [
        Tag(
            tag_id,
            name,
            datetime_to_us(death, "death") if death is not None else None,
            datetime_to_us(birth, "birth") if birth is not None else None,
        )
        for tag_id, name, birth, death in conn.execute(
            sql.SQL("SELECT id, normalized_name, birth_at, death_at FROM {}.tag_names").format(s)
        ).fetchall()
    ]
    rows = [
        RawRow(tag_id, datetime_to_us(at, "time"), value, False)
        for tag_id, at, value in conn.execute(
            sql.SQL("SELECT tag_name_id, tag_value_changed_at, tag_value FROM {}.tag_data").format(
                s
            )
        ).fetchall()
    ]
    rows += [
        RawRow(tag_id, datetime_to_us(at, "time"), value, True)
        for tag_id, at, value in conn.execute(
            sql.SQL(
                "SELECT tag_name_id, tag_value_changed_at, tag_value FROM {}.tag_data_str"
            ).format(s)
        ).fetchall()
    ]
    return rows, tags


def reference_of(conn: psycopg.Connection, tenant: str) -> Reference:
    rows, tags = source_history(conn, tenant)
    return Reference(rows, tags, tenant=tenant)


@pytest.fixture(scope="session")
def references(plant: Plant, admin_conn: psycopg.Connection) -> dict[str, Reference]:
    """The brute-force reference of each plant tenant, from its whole source history."""
    return {tenant: reference_of(admin_conn, tenant) for tenant in plant.tenants}
