"""Shared fixtures on a real PostgreSQL: TAGFLOW_TEST_DSN when set, otherwise an embedded
server in a temp dir for the session; uniquely named tenants and a small generated plant."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from tagflow.demo.synthetic_plant import PlantSummary, demo_api_key, generate_plant
from tagflow.schemas.source_ddl import create_tenant
from tagflow.source.connection import libpq_url
from tagflow.source.embedded import temporary_server

SMALL_PLANT_START = date(2026, 3, 1)


@dataclass(frozen=True)
class CreatedTenant:
    name: str
    api_key: str


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def server_home(prefix: str = "tagflow-pg-") -> Iterator[Path]:
    """A fresh folder for an embedded server's data dir, outside pytest's temp root, removed
    afterwards (stop the server first). pg_ctl runs as the server's own user, and every pytest
    session that starts on the machine (or an xdist worker) resets that root to 0700, which
    would lock the server out of a data dir below it."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """`server_home()` for one test: a data dir path (not yet created) for an embedded server."""
    with server_home() as root:
        yield root / "pg"


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from outside it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def wait_until_serving(process: subprocess.Popen, url: str, log: Path | None = None) -> None:
    """Return once the service at `url` answers /v1/health; fail if its process ends first or
    a minute passes, showing the end of its `log`."""
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, log.read_text()[-3000:] if log else "the server stopped"
        assert time.monotonic() < deadline, "the server did not start"
        try:
            if httpx.get(f"{url}/v1/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)


def unique_tenant_name(prefix: str = "t") -> str:
    """A fresh tenant name, so tests (and parallel workers on a shared DSN) never collide."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def drop_tenant(conn: psycopg.Connection, name: str) -> None:
    """Remove a test tenant's schema and role (roles are cluster-wide, so a shared test DSN
    would otherwise accumulate them)."""
    ident = sql.Identifier(name)
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ident))
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    if exists:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
        conn.execute(sql.SQL("DROP ROLE {}").format(ident))


def copy_rows(conn: psycopg.Connection, tenant: str, tags, numeric, strings) -> None:
    """COPY hand-written source rows into `tenant`, in the order given: `tags` as (id,
    normalized_name, birth_at, death_at), `numeric` and `strings` as the columns of tag_data and
    tag_data_str."""
    s = sql.Identifier(tenant)
    names = sql.SQL("COPY {}.tag_names (id, normalized_name, birth_at, death_at) FROM STDIN")
    with conn.cursor() as cur:
        for statement, rows in (
            (names, tags),
            (sql.SQL("COPY {}.tag_data FROM STDIN"), numeric),
            (sql.SQL("COPY {}.tag_data_str FROM STDIN"), strings),
        ):
            with cur.copy(statement.format(s)) as copy:
                for row in rows:
                    copy.write_row(row)


@contextmanager
def state_database(pg_url: str, admin_conn: psycopg.Connection) -> Iterator[str]:
    """The URL of an empty state database of its own on the test server, dropped after."""
    from tagflow.annotations.state_database import database_on_server, dispose_state_engines

    name = f"state_{uuid.uuid4().hex[:12]}"
    try:
        yield database_on_server(pg_url, name)
    finally:
        dispose_state_engines()
        admin_conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a PostgreSQL that tests may create tenants and roles in."""
    dsn = os.environ.get("TAGFLOW_TEST_DSN")
    if dsn:
        yield dsn
        return
    with temporary_server() as url:
        yield url


@pytest.fixture(scope="session")
def admin_conn(pg_url: str) -> Iterator[psycopg.Connection]:
    """A writable autocommit session for setting up fixtures (tagflow itself only reads)."""
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
        yield conn


@pytest.fixture
def make_tenant(admin_conn: psycopg.Connection) -> Iterator[Callable[[], CreatedTenant]]:
    """Factory of empty tenants (schema, tables, role with an API key), dropped afterwards."""
    created: list[str] = []

    def make() -> CreatedTenant:
        name = unique_tenant_name()
        key = demo_api_key(name, seed=1)
        create_tenant(admin_conn, name, key)
        created.append(name)
        return CreatedTenant(name, key)

    yield make
    for name in created:
        drop_tenant(admin_conn, name)


@pytest.fixture(scope="session")
def small_plant(pg_url: str, admin_conn: psycopg.Connection) -> Iterator[PlantSummary]:
    """Two generated tenants, 36 tags × 3 days from SMALL_PLANT_START, seed 7."""
    names = [unique_tenant_name("plant"), unique_tenant_name("plant")]
    summary = generate_plant(
        pg_url, names, tags=36, days=3, start=SMALL_PLANT_START, seed=7, rows_per_tag_day=40
    )
    yield summary
    for name in names:
        drop_tenant(admin_conn, name)


@pytest.fixture(scope="module")
def state_url(pg_url: str, admin_conn: psycopg.Connection) -> Iterator[str]:
    """An empty state database for the module's tests."""
    with state_database(pg_url, admin_conn) as url:
        yield url
