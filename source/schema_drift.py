"""Checks a tenant's three source tables by reflection against the DDL's columns and types before
the tenant is read: a missing or retyped column is a SchemaDrift naming the table and column,
never a wrong answer. Extra columns are fine. A passed check is remembered per source URL and
tenant for CHECK_TTL_S seconds, so reads do not pay catalogue queries each time."""

from __future__ import annotations

import functools
import threading
import time
import warnings

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine.reflection import ObjectKind

from tagflow.errors import SchemaDrift
from tagflow.names import validate_tenant_name
from tagflow.schemas.source_ddl import canonical_type, source_table_columns
from tagflow.source.connection import answer_within, source_errors
from tagflow.source.tenants import SOURCE_TABLES, require_tenant

# How long a passed check holds: a schema altered meanwhile is refused at the latest this much
# later (until then the extraction's own errors stand).
CHECK_TTL_S = 60.0
# Wall-time bound of one check (a few catalogue queries), for callers that give none.
CHECK_TIMEOUT_S = 30.0
_ACTION = "checking the tenant's source tables"
_SHOWN_TYPE_CHARS = 80

_passed: dict[tuple[str, str], float] = {}
_passed_lock = threading.Lock()


def psycopg_connection(conn: sa.Connection) -> psycopg.Connection:
    """The psycopg connection under a checked-out SQLAlchemy connection."""
    driver = conn.connection.driver_connection
    if driver is None:  # only once the pooled connection was invalidated or closed
        raise RuntimeError("the source session's database connection is already closed")
    return driver


@functools.cache
def expected_columns() -> dict[str, dict[str, str]]:
    """table → column → PostgreSQL type, of the three source tables, from the DDL."""
    columns = source_table_columns()
    if set(columns) != set(SOURCE_TABLES):
        raise RuntimeError(f"the packaged DDL defines {sorted(columns)}, not {SOURCE_TABLES}")
    return columns


def schema_drifts(tenant: str, found: dict[str, dict[str, str]]) -> list[str]:
    """What differs between `found` (table → column → type, as reflected) and the DDL, one
    line per missing or retyped column, in the DDL's order."""
    drifts = []
    for table, columns in expected_columns().items():
        have = found.get(table, {})
        for column, expected in columns.items():
            where = f"{tenant}.{table}.{column}"
            if column not in have:
                drifts.append(f"{where} is missing (expected {expected})")
            elif have[column] != expected:
                drifts.append(f"{where} is {have[column][:_SHOWN_TYPE_CHARS]}, expected {expected}")
    return drifts


def _type_name(type_: sa.types.TypeEngine, dialect: sa.Dialect) -> str:
    try:
        return canonical_type(str(type_.compile(dialect=dialect)))
    except sa.exc.CompileError:  # a type SQLAlchemy does not know (it reflects NullType)
        return "a type tagflow does not know"


def reflect_columns(conn: sa.Connection, tenant: str) -> dict[str, dict[str, str]]:
    """The source tables' columns as the catalogue has them: table → column → type. Views
    and foreign tables count as tables, as they do for tenant discovery."""
    with warnings.catch_warnings():
        # "Did not recognize type": such a column is reported by the check, by name.
        warnings.simplefilter("ignore", sa.exc.SAWarning)
        reflected = sa.inspect(conn).get_multi_columns(
            schema=tenant, filter_names=list(SOURCE_TABLES), kind=ObjectKind.ANY
        )
    return {
        table: {column["name"]: _type_name(column["type"], conn.dialect) for column in columns}
        for (_, table), columns in reflected.items()
    }


def require_schema(
    conn: sa.Connection, url: str, tenant: str, within_s: float | None = None
) -> str:
    """Return `tenant` once it exists (UnknownTenant otherwise) and its tables have every
    column of the DDL with the DDL's type (SchemaDrift otherwise, naming each column and what
    was found). `url` keys the memory of passed checks; `within_s` bounds the check's wall
    time (SourceUnavailable past it)."""
    tenant = validate_tenant_name(tenant)
    key = (url, tenant)
    now = time.monotonic()
    with _passed_lock:
        if _passed.get(key, 0.0) > now:
            return tenant
    driver = psycopg_connection(conn)
    with (
        answer_within(driver, within_s or CHECK_TIMEOUT_S, _ACTION),
        source_errors(_ACTION),
    ):
        require_tenant(driver, tenant)
        found = reflect_columns(conn, tenant)
    drifts = schema_drifts(tenant, found)
    if drifts:
        raise SchemaDrift(
            f"the source tables of tenant {tenant!r} do not match tagflow's schema: "
            + "; ".join(drifts)
            + ". Restore the column or its type (extra columns are fine); nothing is "
            "materialised or served for the tenant until then"
        )
    with _passed_lock:
        for stale in [k for k, until in _passed.items() if until <= now]:
            del _passed[stale]
        _passed[key] = now + CHECK_TTL_S
    return tenant
