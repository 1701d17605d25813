"""Applies the source DDL (`source_schema.sql`, written for psql) to create one tenant through
psycopg: psql variables become quoted identifiers and literals, `\\gexec` runs like psql's."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from typing import LiteralString, cast

import psycopg
from psycopg import sql

from tagflow.errors import InvalidName
from tagflow.names import validate_tenant_name

# Schemas and roles PostgreSQL reserves or that always exist; a tenant of that name would
# land its tables in a system schema or hand its grants (and API key) to a built-in role.
_RESERVED = frozenset({"public", "information_schema", "postgres"})

# `:"var"` is an identifier, `:'var'` a literal; `::type` casts must not match.
_VARIABLE = re.compile(r"(?<!:):(\"|')([A-Za-z_][A-Za-z0-9_]*)\1")


@dataclass(frozen=True)
class DdlStatement:
    """One statement of the script; `gexec` means its result values are themselves SQL."""

    text: str
    gexec: bool


def source_schema_sql() -> str:
    """The DDL script shipped as package data of `schemas`."""
    return files("tagflow.schemas").joinpath("source_schema.sql").read_text(encoding="utf-8")


def split_statements(script: str) -> list[DdlStatement]:
    """Split a psql script into statements ended by `;` or `\\gexec`, dropping `--` comments.

    Quotes are tracked so a `;` or `--` inside a string or quoted identifier is kept."""
    statements: list[DdlStatement] = []
    buf: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(script):
        ch = script[i]
        if quote is not None:
            buf.append(ch)
            if ch == quote:
                quote = None
            i += 1
        elif ch in "'\"":
            quote = ch
            buf.append(ch)
            i += 1
        elif script.startswith("--", i):
            end = script.find("\n", i)
            i = len(script) if end < 0 else end
        elif ch == ";" or script.startswith("\\gexec", i):
            text = "".join(buf).strip()
            if text:
                statements.append(DdlStatement(text, gexec=ch != ";"))
            buf = []
            i += 1 if ch == ";" else len("\\gexec")
        else:
            buf.append(ch)
            i += 1
    if "".join(buf).strip():
        raise ValueError("source DDL ends with an unterminated statement")
    return statements


def bind_variables(text: str, variables: dict[str, str]) -> sql.Composed:
    """Replace psql variables with `sql.Identifier` / `sql.Literal`; the rest stays verbatim
    SQL from the packaged script (never from input)."""
    parts: list[sql.Composable] = []
    pos = 0
    for match in _VARIABLE.finditer(text):
        parts.append(sql.SQL(text[pos : match.start()]))
        value = variables[match.group(2)]
        parts.append(sql.Identifier(value) if match.group(1) == '"' else sql.Literal(value))
        pos = match.end()
    parts.append(sql.SQL(text[pos:]))
    return sql.Composed(parts)


def _refuse_reserved(conn: psycopg.Connection, tenant: str) -> None:
    if tenant.lower() in _RESERVED or tenant.lower().startswith("pg_"):
        raise InvalidName(f"tenant name {tenant!r} is reserved by PostgreSQL; choose another")
    row = conn.execute(
        "SELECT rolsuper OR rolcreaterole OR rolname = current_user FROM pg_roles"
        " WHERE rolname = %s",
        (tenant,),
    ).fetchone()
    if row is not None and row[0]:
        raise InvalidName(f"tenant name {tenant!r} belongs to an administrative role")


def create_tenant(conn: psycopg.Connection, tenant: str, api_key: str) -> None:
    """Create (idempotently) the tenant's schema, tables, indexes, view and read-only login
    role, and set the role's password to `api_key`. Needs a role that may create roles."""
    validate_tenant_name(tenant)
    if not api_key:
        raise ValueError("api_key must be non-empty")
    variables = {"tenant": tenant}
    with conn.transaction(), conn.cursor() as cur:
        _refuse_reserved(conn, tenant)
        for statement in split_statements(source_schema_sql()):
            query = bind_variables(statement.text, variables)
            cur.execute(query)
            if statement.gexec:
                # psql's \gexec: every non-null value of every result row is a statement.
                generated = [value for row in cur.fetchall() for value in row if value is not None]
                for text in generated:
                    cur.execute(sql.SQL(cast(LiteralString, text)))
        # libpq hashes the key client-side (SCRAM per the server's password_encryption), so
        # the cleartext never reaches the server or its statement log.
        hashed = conn.pgconn.encrypt_password(api_key.encode(), tenant.encode()).decode()
        cur.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(tenant), sql.Literal(hashed))
        )


# `CREATE TABLE [IF NOT EXISTS] :"tenant".name ( … )`: the tables of one tenant.
_CREATE_TABLE = re.compile(
    r"^CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?:\"tenant\"\.(\w+)\s*\((.*)\)\s*$",
    re.IGNORECASE | re.DOTALL,
)
# Words that end a column's type and start its constraints.
_CONSTRAINT_WORDS = frozenset(
    {"primary", "not", "null", "unique", "default", "references", "check", "constraint",
     "collate", "generated"}
)  # fmt: skip
# Table constraints, which name no column of their own.
_TABLE_CONSTRAINTS = ("primary ", "unique ", "unique(", "constraint ", "check ", "foreign ")
# The names PostgreSQL's format_type() gives the DDL's spellings (serial is an integer column
# with a sequence default).
_TYPE_ALIASES = {
    "serial": "integer",
    "serial4": "integer",
    "bigserial": "bigint",
    "serial8": "bigint",
    "smallserial": "smallint",
    "serial2": "smallint",
    "int": "integer",
    "int4": "integer",
    "int8": "bigint",
    "int2": "smallint",
    "float8": "double precision",
    "float4": "real",
    "bool": "boolean",
    "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone",
    "timetz": "time with time zone",
    "time": "time without time zone",
    "varchar": "character varying",
}


def canonical_type(name: str) -> str:
    """A PostgreSQL type name as format_type() writes it: lower case, aliases resolved."""
    spelled = " ".join(name.lower().split())
    return _TYPE_ALIASES.get(spelled, spelled)


def _split_top_level(body: str) -> list[str]:
    """The comma-separated items of a CREATE TABLE body (commas inside parentheses kept)."""
    items, depth, start = [], 0, 0
    for at, ch in enumerate(body):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(body[start:at])
            start = at + 1
    items.append(body[start:])
    return [item.strip() for item in items if item.strip()]


def source_table_columns() -> dict[str, dict[str, str]]:
    """The columns of every table of a tenant, read from the packaged DDL: table → column →
    canonical PostgreSQL type (`tag_data.tag_value` → 'double precision'). The one source of
    truth of what the extraction expects to find."""
    tables: dict[str, dict[str, str]] = {}
    for statement in split_statements(source_schema_sql()):
        match = _CREATE_TABLE.match(statement.text)
        if match is None:
            continue
        columns: dict[str, str] = {}
        for item in _split_top_level(match.group(2)):
            if item.lower().startswith(_TABLE_CONSTRAINTS):
                continue
            name, *words = item.split()
            type_words = []
            for word in words:
                if word.lower() in _CONSTRAINT_WORDS:
                    break
                type_words.append(word)
            columns[name.strip('"')] = canonical_type(" ".join(type_words))
        tables[match.group(1)] = columns
    return tables
