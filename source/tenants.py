"""Discovery and checking of tenants: a tenant is a schema holding the three source tables
that the connected role may read."""

from __future__ import annotations

import psycopg

from tagflow.errors import InvalidName, UnknownTenant
from tagflow.names import validate_tenant_name
from tagflow.source.connection import source_errors

SOURCE_TABLES = ("tag_names", "tag_data", "tag_data_str")

# Schemas whose three tables exist and that this role may read: a tenant role connected to
# the source sees only itself, never the names of other tenants. SELECT is checked, not only
# the schema's USAGE, so a stray USAGE grant is an unknown tenant, not a permission error.
_TENANT_SCHEMAS = """
SELECT n.nspname
  FROM pg_namespace n
 WHERE has_schema_privilege(n.oid, 'USAGE')
   AND (SELECT count(DISTINCT c.relname)
          FROM pg_class c
         WHERE c.relnamespace = n.oid
           AND c.relname = ANY(%(tables)s)
           AND c.relkind IN ('r', 'p', 'v', 'f', 'm')
           AND has_table_privilege(c.oid, 'SELECT')) = 3
"""


def list_tenants(conn: psycopg.Connection) -> list[str]:
    """Names of the tenants visible to this connection, sorted. Schemas whose names are not
    valid tenant names are skipped: nothing downstream could address them safely."""
    with source_errors("listing tenants"):
        rows = conn.execute(
            _TENANT_SCHEMAS + " ORDER BY n.nspname", {"tables": list(SOURCE_TABLES)}
        ).fetchall()
    names = []
    for (name,) in rows:
        try:
            names.append(validate_tenant_name(name))
        except InvalidName:
            continue
    return names


def require_tenant(conn: psycopg.Connection, name: object) -> str:
    """Return `name` if it is a valid tenant name and such a tenant exists (and is visible to
    this connection); raise InvalidName or UnknownTenant otherwise."""
    tenant = validate_tenant_name(name)
    with source_errors("checking the tenant"):
        row = conn.execute(
            _TENANT_SCHEMAS + " AND n.nspname = %(name)s",
            {"tables": list(SOURCE_TABLES), "name": tenant},
        ).fetchone()
    if row is None:
        raise UnknownTenant(
            f"unknown tenant {tenant!r}: the source has no tenant of that name "
            "(or this connection may not read it); `tagflow tenants` lists the valid names"
        )
    return tenant
