"""Tenant isolation at the database role (least privilege). Connected as tenant A's own login
role, every extraction function reads A exactly as an administrator does: read_tags,
first_row_time, stream_day_rows (ADBC from a URL and psycopg COPY on a connection),
raw_day_chunks (what the day asset reads days with), read_carry_in and day_fingerprint. The
same role cannot read tenant B: through tagflow's functions B is an UnknownTenant (its schema
is invisible to A), also when A was granted USAGE on B's schema by mistake, and raw SQL on
B's tables is refused by PostgreSQL itself."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import psycopg
import pyarrow as pa
import pytest
from psycopg import conninfo, sql

from tagflow.cli.runs import materialize_days
from tagflow.demo.synthetic_plant import PlantSummary, generate_plant
from tagflow.errors import UnknownTenant
from tagflow.io_managers import DatasetStore
from tagflow.schemas.arrow import RAW_ROWS
from tagflow.schemas.registry import DATASETS
from tagflow.settings import Settings
from tagflow.source.connection import connect, libpq_url
from tagflow.source.day_stream import raw_day_chunks
from tagflow.source.extract import (
    carry_in_query,
    day_rows_query,
    first_row_time,
    read_carry_in,
    read_tags,
    stream_day_rows,
)
from tagflow.source.fingerprints import RowsFingerprint, day_fingerprint
from tagflow.source.tenants import list_tenants
from tagflow.transforms.tag_order import TagOrder
from tagflow.transforms.transitions import resolve_rows
from tests.conftest import drop_tenant, unique_tenant_name
from tests.reliability.test_crash_safety import fingerprint

DAY1 = date(2026, 3, 1)
D0 = datetime(2026, 3, 2, tzinfo=UTC)  # the second day: it has a carry-in from the first
D1 = D0 + timedelta(days=1)


@pytest.fixture(scope="module")
def plant(pg_url: str, admin_conn: psycopg.Connection) -> Iterator[PlantSummary]:
    names = [unique_tenant_name("role"), unique_tenant_name("role")]
    summary = generate_plant(
        pg_url, names, tags=16, days=2, start=DAY1, seed=29, rows_per_tag_day=30
    )
    yield summary
    for name in names:
        drop_tenant(admin_conn, name)


def role_url(pg_url: str, plant: PlantSummary, tenant: str) -> str:
    """A libpq URL logging in as `tenant`'s own role with its password (its API key)."""
    return conninfo.make_conninfo(libpq_url(pg_url), user=tenant, password=plant.api_keys[tenant])


def rows_hash(table: pa.Table) -> str:
    """Content hash of raw rows (bit-exact, so NaN rows compare equal), in a total order:
    the plant holds duplicate rows at one instant, streamed in no particular order."""
    assert table.num_rows > 0
    return fingerprint(table.sort_by([(name, "ascending") for name in RAW_ROWS.names]))


def day_rows(source: str | psycopg.Connection, tenant: str) -> str:
    batches = list(stream_day_rows(source, tenant, D0, D1))
    return rows_hash(pa.Table.from_batches(batches, schema=RAW_ROWS))


def day_chunks(url: str, tenant: str, tags: pa.Table) -> str:
    """The day's transitions as the assets extract them, in chunks of 4 tags."""
    rows = 4 * 200  # day rows expected per chunk: 200 per tag assumed
    order = TagOrder.of(tags)
    chunks = raw_day_chunks(
        url, tenant, order.tag_id, D0, D1, rows * tags.num_rows // 4, RowsFingerprint(),
        max_rows=rows,
    )  # fmt: skip
    return fingerprint(pa.concat_tables([resolve_rows(c.rows, order)[0] for c in chunks]))


def test_extraction_as_the_tenants_own_role_equals_extraction_as_admin(
    plant: PlantSummary, pg_url: str
) -> None:
    a = plant.tenants[0].tenant
    url = role_url(pg_url, plant, a)
    with connect(url) as role, connect(pg_url) as admin:
        assert role.execute("SELECT current_user").fetchone() == (a,)
        assert list_tenants(role) == [a]
        assert fingerprint(read_tags(role, a)) == fingerprint(read_tags(admin, a))
        assert first_row_time(role, a) == first_row_time(admin, a)
        carry_in = read_carry_in(role, a, D0)
        assert carry_in.num_rows > 0
        assert fingerprint(carry_in) == fingerprint(read_carry_in(admin, a, D0))
        assert day_fingerprint(role, a, D0, D1) == day_fingerprint(admin, a, D0, D1)
        by_connection = day_rows(role, a)
        assert by_connection == day_rows(admin, a)
        tags = read_tags(admin, a)
    by_url = day_rows(url, a)  # ADBC, its own connection as the role
    assert by_url == day_rows(pg_url, a) == by_connection
    assert day_chunks(url, a, tags) == day_chunks(pg_url, a, tags)


@pytest.mark.parametrize("stray_usage_grant", [False, True], ids=["plain", "usage-granted"])
def test_a_tenants_role_cannot_read_another_tenant(
    plant: PlantSummary, pg_url: str, admin_conn: psycopg.Connection, stray_usage_grant: bool
) -> None:
    a, b = (t.tenant for t in plant.tenants)
    schema_b = sql.Identifier(b)
    if stray_usage_grant:
        admin_conn.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema_b, sql.Identifier(a))
        )
    try:
        url = role_url(pg_url, plant, a)
        with connect(url) as role:
            assert list_tenants(role) == [a]
            tags_a = read_tags(role, a)
            for read in (
                lambda: read_tags(role, b),
                lambda: first_row_time(role, b),
                lambda: read_carry_in(role, b, D0),
                lambda: day_fingerprint(role, b, D0, D1),
                lambda: stream_day_rows(role, b, D0, D1),
                lambda: stream_day_rows(url, b, D0, D1),
                lambda: list(
                    raw_day_chunks(
                        url, b, TagOrder.of(tags_a).tag_id, D0, D1, 100, RowsFingerprint()
                    )
                ),
            ):
                with pytest.raises(UnknownTenant) as refused:
                    read()
                assert "tag_data" not in str(refused.value)  # no SQL or table names shown
            # Bypassing tagflow's checks: PostgreSQL refuses the role itself.
            for query in (
                sql.SQL("SELECT * FROM {}.tag_names").format(schema_b),
                day_rows_query(b, D0, D1, None),
                carry_in_query(b, D0),
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    role.execute(query)
    finally:
        if stray_usage_grant:
            admin_conn.execute(
                sql.SQL("REVOKE USAGE ON SCHEMA {} FROM {}").format(schema_b, sql.Identifier(a))
            )


def role_template(pg_url: str, user: str) -> str:
    """`pg_url` logging in as `user` (a literal role or the `{tenant}` placeholder), password
    left to PGPASSFILE."""
    parts = urlsplit(libpq_url(pg_url))
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


@pytest.fixture
def role_passwords(plant: PlantSummary, tmp_path, monkeypatch) -> None:
    """A PGPASSFILE holding each tenant role's password, as a deployment would."""
    passfile = tmp_path / "pgpass"
    passfile.write_text("".join(f"*:*:*:{t}:{key}\n" for t, key in plant.api_keys.items()))
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))


def test_materialisation_reads_each_tenant_with_its_own_role(
    plant: PlantSummary, pg_url: str, role_passwords, monkeypatch, tmp_path
) -> None:
    tenant_a, tenant_b = (t.tenant for t in plant.tenants)
    day, end = DAY1 + timedelta(days=1), DAY1 + timedelta(days=2)
    instance = dg.DagsterInstance.ephemeral()
    (admin,) = materialize_days(
        tenant_a, day, end, instance, Settings(source_url=pg_url, store=str(tmp_path / "admin"))
    )

    # The template as a deployment sets it: in the environment the settings are read from.
    monkeypatch.setenv("TAGFLOW_SOURCE_URL_TEMPLATE", role_template(pg_url, "{tenant}"))
    own_role = Settings.from_env().replace(source_url=pg_url, store=str(tmp_path / "own"))
    (own,) = materialize_days(tenant_a, day, end, instance, own_role)
    assert admin.success and own.success
    for dataset in DATASETS:
        paths = [
            DatasetStore(tmp_path / kind).partition_path(dataset, tenant_a, day).path
            for kind in ("admin", "own")
        ]
        with open(paths[0], "rb") as first, open(paths[1], "rb") as second:
            assert first.read() == second.read(), dataset

    # Proof that the template's role is the one reading: B's role cannot see A at all.
    wrong_role = own_role.replace(source_url_template=role_template(pg_url, tenant_b))
    with pytest.raises(UnknownTenant):
        materialize_days(tenant_a, day, end, instance, wrong_role)
