"""Reads one tenant's source tables into Arrow: the tag list, a UTC day's raw rows (streamed in
bounded batches) and the per-tag carry-in before the day, found with index look-ups only."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
from psycopg import sql

from tagflow.errors import InvalidTimeRange, SourceDataError
from tagflow.names import validate_tenant_name
from tagflow.schemas.arrow import RAW_CARRY_IN, RAW_ROWS, TAGS, TS
from tagflow.source.connection import connect_adbc, source_errors
from tagflow.source.engines import source_session
from tagflow.source.tenants import require_tenant

DEFAULT_BATCH_BYTES = 16 * 1024 * 1024
_STRING_BATCH_ROWS = 65_536

# value_kind from history with one LIMIT 1 probe of each (tag_name_id, time) index per tag; a
# plain EXISTS in the select list may be planned as a hashed subplan that reads the whole table,
# and a bare LIMIT 1 as a sequential scan when one tag holds most rows (46 s at 6 M rows): the
# ORDER BY the index already has keeps every probe on it. ±infinity births and deaths mean
# NULL (DESIGN §2); they could not be converted anyway.
_TAGS = """
SELECT n.id, n.normalized_name,
       CASE WHEN isfinite(n.birth_at) THEN n.birth_at END,
       CASE WHEN isfinite(n.death_at) THEN n.death_at END,
       CASE WHEN num.x AND str.x THEN 'mixed'
            WHEN num.x THEN 'numeric'
            WHEN str.x THEN 'string' END
  FROM {s}.tag_names n
  LEFT JOIN LATERAL (SELECT true AS x FROM {s}.tag_data d
                      WHERE d.tag_name_id = n.id
                      ORDER BY d.tag_name_id, d.tag_value_changed_at DESC LIMIT 1) num ON true
  LEFT JOIN LATERAL (SELECT true AS x FROM {s}.tag_data_str d
                      WHERE d.tag_name_id = n.id
                      ORDER BY d.tag_name_id, d.tag_value_changed_at DESC LIMIT 1) str ON true
 ORDER BY n.id
"""

# Rows no day holds (DESIGN §2: skipped, counted as out of range): a time of ±infinity, or none.
# Each arm is an index look-up on the time index.
_OUT_OF_RANGE = """
SELECT (SELECT count(*) FROM {s}.tag_data
         WHERE tag_value_changed_at IN ('infinity', '-infinity')
            OR tag_value_changed_at IS NULL)
     + (SELECT count(*) FROM {s}.tag_data_str
         WHERE tag_value_changed_at IN ('infinity', '-infinity')
            OR tag_value_changed_at IS NULL)
"""

# A day's rows: the time range (and optional tag-id chunk) is served by the time indexes.
_DAY_WHERE = "tag_value_changed_at >= {d0} AND tag_value_changed_at < {d1} {tag_filter}"
_DAY_NUMERIC = """
SELECT tag_name_id AS tag_id, tag_value_changed_at AS time, tag_value AS value_double,
       NULL::text AS value_string, false AS is_string
  FROM {s}.tag_data WHERE {day}
"""
_DAY_STRING = """
SELECT tag_name_id AS tag_id, tag_value_changed_at AS time, NULL::float8 AS value_double,
       tag_value AS value_string, true AS is_string
  FROM {s}.tag_data_str WHERE {day}
"""
# The psycopg path reads numbers as fixed-width binary tuples (no NULL fields), so a whole
# buffer decodes with one numpy.frombuffer; the NULL flag travels as its own column.
_DAY_NUMERIC_FIXED = """
SELECT tag_name_id, tag_value_changed_at, coalesce(tag_value, 0), tag_value IS NULL
  FROM {s}.tag_data WHERE {day}
"""
_FIXED_TUPLE = np.dtype(
    [
        ("nfields", ">i2"),
        ("tag_len", ">i4"),
        ("tag", ">i4"),
        ("time_len", ">i4"),
        ("time", ">i8"),
        ("value_len", ">i4"),
        ("value", ">f8"),
        ("null_len", ">i4"),
        ("null", "u1"),
    ]
)
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_COPY_TRAILER = b"\xff\xff"
_PG_EPOCH_US = 946_684_800_000_000  # binary timestamptz counts µs from 2000-01-01 UTC

# The resolved row of tag n at instant {at}: a tag_data_str row wins (greatest string in
# byte order, NULL lowest), else the greatest number (PostgreSQL orders NaN above +inf; NULL
# lowest by NULLS LAST). Two LIMIT 1 probes of the (tag_name_id, time) indexes.
_RESOLVED_AT = """
SELECT u.is_string, u.vd, u.vs FROM (
    (SELECT true AS is_string, NULL::float8 AS vd, x.tag_value AS vs
       FROM {s}.tag_data_str x
      WHERE x.tag_name_id = n.id AND x.tag_value_changed_at = {at}
      ORDER BY x.tag_value COLLATE "C" DESC NULLS LAST LIMIT 1)
    UNION ALL
    (SELECT false, d.tag_value, NULL::text
       FROM {s}.tag_data d
      WHERE d.tag_name_id = n.id AND d.tag_value_changed_at = {at}
      ORDER BY d.tag_value DESC NULLS LAST LIMIT 1)
) u ORDER BY u.is_string DESC LIMIT 1
"""

# Per tag (a nested loop over tag_names; every access is a LIMIT 1 probe of an index):
#   ci    the carry-in instant: the latest row time before d0 in either table;
#   cv    the resolved value at that instant;
#   lb    the run's lower bound: death_at when the tag was reborn (death_at < ci.t);
#   walk  back through earlier instants holding a row distinct from cv (NULL = NULL across
#         tables, number vs string differ, NaN = NaN) until one *resolves* to another value
#         (a distinct row can lose duplicate resolution at its instant; then keep walking);
#   run_begin_at = the first row time after that break (or after lb; or the first row ever).
# OFFSET 0 keeps ci/lb/cand as computed subqueries: pulled up, the planner would copy their
# GREATEST(probe, probe) expressions into every reference and run the probes again each time.
# Values are equal iff (vd, vs) are not distinct: a number carries vs NULL, a string vd NULL.
_CARRY_IN = """
SELECT n.id, ci.t, cv.vd, cv.vs, cv.is_string, rb.run_begin_at
  FROM {s}.tag_names n
 CROSS JOIN LATERAL (
    SELECT GREATEST(
        (SELECT d.tag_value_changed_at FROM {s}.tag_data d
          WHERE d.tag_name_id = n.id AND d.tag_value_changed_at < {d0}
            AND d.tag_value_changed_at > '-infinity'
          ORDER BY d.tag_value_changed_at DESC LIMIT 1),
        (SELECT x.tag_value_changed_at FROM {s}.tag_data_str x
          WHERE x.tag_name_id = n.id AND x.tag_value_changed_at < {d0}
            AND x.tag_value_changed_at > '-infinity'
          ORDER BY x.tag_value_changed_at DESC LIMIT 1)) AS t
    OFFSET 0
 ) ci
 CROSS JOIN LATERAL ({resolved_at_ci}) cv
 CROSS JOIN LATERAL (
    SELECT CASE WHEN n.death_at < ci.t AND isfinite(n.death_at) THEN n.death_at
                ELSE '-infinity'::timestamptz END AS t
    OFFSET 0
 ) lb
 CROSS JOIN LATERAL (
    WITH RECURSIVE walk(t, differs) AS (
        SELECT ci.t, false
        UNION ALL
        SELECT cand.t,
               NOT (rv.vd IS NOT DISTINCT FROM cv.vd
                    AND rv.vs COLLATE "C" IS NOT DISTINCT FROM cv.vs COLLATE "C")
          FROM walk w
         CROSS JOIN LATERAL (
            SELECT GREATEST(
                (SELECT d.tag_value_changed_at FROM {s}.tag_data d
                  WHERE d.tag_name_id = n.id
                    AND d.tag_value_changed_at < w.t AND d.tag_value_changed_at > lb.t
                    AND NOT (d.tag_value IS NOT DISTINCT FROM cv.vd AND cv.vs IS NULL)
                  ORDER BY d.tag_value_changed_at DESC LIMIT 1),
                (SELECT x.tag_value_changed_at FROM {s}.tag_data_str x
                  WHERE x.tag_name_id = n.id
                    AND x.tag_value_changed_at < w.t AND x.tag_value_changed_at > lb.t
                    AND NOT (x.tag_value COLLATE "C" IS NOT DISTINCT FROM cv.vs COLLATE "C"
                             AND cv.vd IS NULL)
                  ORDER BY x.tag_value_changed_at DESC LIMIT 1)) AS t
            OFFSET 0
         ) cand
         CROSS JOIN LATERAL ({resolved_at_cand}) rv
         WHERE NOT w.differs AND cand.t IS NOT NULL
    )
    SELECT LEAST(
        (SELECT d.tag_value_changed_at FROM {s}.tag_data d
          WHERE d.tag_name_id = n.id AND d.tag_value_changed_at > GREATEST(brk.t, lb.t)
          ORDER BY d.tag_value_changed_at ASC LIMIT 1),
        (SELECT x.tag_value_changed_at FROM {s}.tag_data_str x
          WHERE x.tag_name_id = n.id AND x.tag_value_changed_at > GREATEST(brk.t, lb.t)
          ORDER BY x.tag_value_changed_at ASC LIMIT 1)) AS run_begin_at
      FROM (SELECT max(walk.t) FILTER (WHERE walk.differs) AS t FROM walk) brk
 ) rb
 WHERE ci.t IS NOT NULL
 ORDER BY n.id
"""


# The earliest row of the tenant: min() of each table's time index, read from its low end.
# Rows at ±infinity are in no day (DESIGN §2), so they start no history (and psycopg could not
# convert them): isfinite() written as a range, which the index serves, where a filter would
# walk every −infinity row first.
_FIRST_ROW = """
SELECT LEAST((SELECT min(tag_value_changed_at) FROM {s}.tag_data
               WHERE tag_value_changed_at > '-infinity' AND tag_value_changed_at < 'infinity'),
             (SELECT min(tag_value_changed_at) FROM {s}.tag_data_str
               WHERE tag_value_changed_at > '-infinity' AND tag_value_changed_at < 'infinity'))
"""


def _check_day(d0: datetime, d1: datetime) -> None:
    if d0.tzinfo is None or d1.tzinfo is None:
        raise InvalidTimeRange("day bounds must be timezone-aware (UTC) datetimes")
    if not d0 < d1:
        raise InvalidTimeRange(f"empty or reversed range: {d0.isoformat()} >= {d1.isoformat()}")


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Transpose fetched rows into `width` column lists (empty lists for no rows)."""
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


def _timestamps(values: list[Any]) -> pa.Array:
    # pyarrow converts aware datetimes to UTC instants; the session runs in UTC anyway.
    return pa.array(values, type=TS)


def read_tags(conn: psycopg.Connection, tenant: str) -> pa.Table:
    """The tenant's tag_names as a TAGS table, sorted by tag_id; value_kind says which tables
    hold rows of the tag ('numeric', 'string', 'mixed'; null when it has none)."""
    require_tenant(conn, tenant)
    query = sql.SQL(_TAGS).format(s=sql.Identifier(tenant))
    with source_errors("reading the tag list"):
        rows = conn.execute(query).fetchall()
    ids, names, births, deaths, kinds = _columns(rows, 5)
    _require_unique_names(ids, names)
    return pa.Table.from_arrays(
        [
            pa.array(ids, pa.int32()),
            pa.array(names, pa.string()),
            _timestamps(births),
            _timestamps(deaths),
            pa.array(kinds, pa.string()),
        ],
        schema=TAGS,
    )


def _require_unique_names(ids: list[int], names: list[str]) -> None:
    """Tag names must be unique within a tenant (DESIGN §2): two ids under one name would merge
    two histories into one, so the tenant's runs and reads stop with the ids named."""
    seen: dict[str, int] = {}
    clashes: list[str] = []
    for tag_id, name in zip(ids, names, strict=True):
        if name in seen:
            clashes.append(f"ids {seen[name]} and {tag_id} share the name {name[:80]!r}")
        else:
            seen[name] = tag_id
    if clashes:
        shown = "; ".join(clashes[:5]) + (
            f"; and {len(clashes) - 5} more" if len(clashes) > 5 else ""
        )
        raise SourceDataError(
            f"the tenant's tag names are not unique ({shown}); rename or remove the duplicates "
            "in tag_names: nothing is materialised or served for the tenant until then"
        )


def count_out_of_range(conn: psycopg.Connection, tenant: str) -> int:
    """The tenant's rows whose time is ±infinity or NULL: no day holds them (DESIGN §2)."""
    require_tenant(conn, tenant)
    with source_errors("counting rows out of range"):
        row = conn.execute(sql.SQL(_OUT_OF_RANGE).format(s=sql.Identifier(tenant))).fetchone()
    return int(row[0]) if row else 0


def first_row_time(conn: psycopg.Connection, tenant: str) -> datetime | None:
    """Time of the tenant's earliest row in either table, rows at ±infinity left out (None
    when it has no other rows); two index look-ups, so a new tenant's backfill can start where
    its history does."""
    require_tenant(conn, tenant)
    with source_errors("reading the first row time"):
        row = conn.execute(sql.SQL(_FIRST_ROW).format(s=sql.Identifier(tenant))).fetchone()
    return row[0] if row else None


def _tag_filter(tag_ids: Collection[int] | None) -> sql.Composable:
    if tag_ids is None:
        return sql.SQL("")
    ids = [int(v) for v in tag_ids]
    return sql.SQL("AND tag_name_id = ANY({}::int4[])").format(sql.Literal(ids))


def _day_query(
    template: str, tenant: str, d0: datetime, d1: datetime, tag_ids: Collection[int] | None
) -> sql.Composed:
    day = sql.SQL(_DAY_WHERE).format(
        d0=sql.Literal(d0), d1=sql.Literal(d1), tag_filter=_tag_filter(tag_ids)
    )
    return sql.SQL(template).format(s=sql.Identifier(tenant), day=day)


def day_rows_query(
    tenant: str, d0: datetime, d1: datetime, tag_ids: Collection[int] | None = None
) -> sql.Composed:
    """Both tables' rows of the day in RAW_ROWS column order (also the late-data fingerprint's
    input, so it covers exactly the rows a partition reads), of every tag or of `tag_ids`."""
    return sql.SQL("{} UNION ALL {}").format(
        _day_query(_DAY_NUMERIC, tenant, d0, d1, tag_ids),
        _day_query(_DAY_STRING, tenant, d0, d1, tag_ids),
    )


def estimate_day_rows(conn: psycopg.Connection, tenant: str, d0: datetime, d1: datetime) -> int:
    """The planner's estimate of the day's rows (from the tables' statistics, no scan): enough
    to size chunks, which only bound memory."""
    _check_day(d0, d1)
    query = sql.SQL("EXPLAIN (FORMAT JSON) {}").format(day_rows_query(tenant, d0, d1))
    with source_errors("estimating the day's rows"):
        row = conn.execute(query).fetchone()
    if row is None:  # EXPLAIN always answers its plan
        raise RuntimeError("EXPLAIN of the day's rows returned no plan")
    (plan,) = row
    return int(plan[0]["Plan"]["Plan Rows"])


def _as_raw_rows(batch: pa.RecordBatch) -> pa.RecordBatch:
    # ADBC attaches PostgreSQL type metadata to fields; the contract is exactly RAW_ROWS.
    columns = [batch.column(i).cast(RAW_ROWS.field(i).type) for i in range(len(RAW_ROWS))]
    return pa.RecordBatch.from_arrays(columns, schema=RAW_ROWS)


def _stream_adbc(
    url: str, query: str, batch_bytes: int, statement_timeout_s: float | None
) -> Iterator[pa.RecordBatch]:
    conn = (
        connect_adbc(url)
        if statement_timeout_s is None
        else connect_adbc(url, statement_timeout_s=statement_timeout_s)
    )
    try:
        with source_errors("reading the day's rows"):
            cursor = conn.cursor()
            try:
                cursor.adbc_statement.set_options(
                    **{"adbc.postgresql.batch_size_hint_bytes": str(batch_bytes)}
                )
                cursor.execute(query)
                for batch in cursor.fetch_record_batch():
                    if batch.num_rows:
                        yield _as_raw_rows(batch)
            finally:
                cursor.close()
    finally:
        conn.close()


def _decode_fixed(data: bytes) -> pa.RecordBatch:
    records = np.frombuffer(data, dtype=_FIXED_TUPLE)
    n = len(records)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(records["tag"].astype(np.int32)),
            pa.array(records["time"].astype(np.int64) + _PG_EPOCH_US, type=TS),
            pa.array(records["value"].astype(np.float64), mask=records["null"].astype(bool)),
            pa.nulls(n, pa.string()),
            pa.array(np.zeros(n, dtype=bool)),
        ],
        schema=RAW_ROWS,
    )


def _numeric_batches(
    conn: psycopg.Connection, query: sql.Composed, batch_bytes: int
) -> Iterator[pa.RecordBatch]:
    """tag_data rows through psycopg's binary COPY, decoded a buffer at a time."""
    size = _FIXED_TUPLE.itemsize
    buf = bytearray()
    header_seen = False
    copy_query = sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query)
    with conn.cursor() as cur, cur.copy(copy_query) as copy:
        for block in copy:
            buf += block
            if not header_seen and len(buf) >= 19:
                if bytes(buf[:11]) != _COPY_SIGNATURE:
                    raise psycopg.DataError("unexpected COPY BINARY header")
                header_end = 19 + int.from_bytes(buf[15:19], "big")
                if len(buf) < header_end:
                    continue
                del buf[:header_end]
                header_seen = True
            if header_seen and len(buf) >= batch_bytes:
                whole = len(buf) // size * size
                yield _decode_fixed(bytes(buf[:whole]))
                del buf[:whole]
    whole = len(buf) // size * size
    if whole:
        yield _decode_fixed(bytes(buf[:whole]))
    if bytes(buf[whole:]) != _COPY_TRAILER:
        raise psycopg.DataError("truncated COPY BINARY stream")


def _string_batches(conn: psycopg.Connection, query: sql.Composed) -> Iterator[pa.RecordBatch]:
    """tag_data_str rows (variable width) through binary COPY, decoded row by row."""
    copy_query = sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query)
    with conn.cursor() as cur, cur.copy(copy_query) as copy:
        copy.set_types(["int4", "timestamptz", "float8", "text", "bool"])
        chunk: list[tuple[Any, ...]] = []
        for row in copy.rows():
            chunk.append(row)
            if len(chunk) == _STRING_BATCH_ROWS:
                yield _batch_from_rows(chunk)
                chunk = []
        if chunk:
            yield _batch_from_rows(chunk)


def _stream_psycopg(
    conn: psycopg.Connection,
    tenant: str,
    d0: datetime,
    d1: datetime,
    tag_ids: Collection[int] | None,
    batch_bytes: int,
) -> Iterator[pa.RecordBatch]:
    """The path for callers that hand in a connection (e.g. to read inside their own
    snapshot): psycopg binary COPY, numbers decoded vectorised, strings row by row."""
    with source_errors("reading the day's rows"):
        numeric = _day_query(_DAY_NUMERIC_FIXED, tenant, d0, d1, tag_ids)
        yield from _numeric_batches(conn, numeric, batch_bytes)
        yield from _string_batches(conn, _day_query(_DAY_STRING, tenant, d0, d1, tag_ids))


def _batch_from_rows(rows: list[tuple[Any, ...]]) -> pa.RecordBatch:
    tag_id, time, value_double, value_string, is_string = _columns(rows, 5)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(tag_id, pa.int32()),
            _timestamps(time),
            pa.array(value_double, pa.float64()),
            pa.array(value_string, pa.string()),
            pa.array(is_string, pa.bool_()),
        ],
        schema=RAW_ROWS,
    )


def stream_day_rows(
    source: str | psycopg.Connection,
    tenant: str,
    d0: datetime,
    d1: datetime,
    *,
    tag_ids: Collection[int] | None = None,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    statement_timeout_s: float | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream the rows of both tables with d0 <= time < d1 as RAW_ROWS batches, unresolved
    and unordered; `tag_ids` restricts them to those tags.

    Given a URL the tenant is checked on a pooled session (it exists, its tables match the
    DDL) and the rows come through ADBC (COPY BINARY decoded in C++ into Arrow batches of
    about `batch_bytes`), the fast path; given a psycopg connection they come through its
    binary COPY inside that connection's transaction (numbers first, then strings).
    Memory stays bounded by about one batch."""
    # Name and range are checked now, not on the first next(), and before any connection.
    validate_tenant_name(tenant)
    _check_day(d0, d1)
    if isinstance(source, psycopg.Connection):
        require_tenant(source, tenant)
        return _stream_psycopg(source, tenant, d0, d1, tag_ids, batch_bytes)
    with source_session(source, tenant=tenant) as conn:
        require_tenant(conn, tenant)  # the check above may be remembered from a while ago
        text = day_rows_query(tenant, d0, d1, tag_ids).as_string(conn)
    return _stream_adbc(source, text, batch_bytes, statement_timeout_s)


def carry_in_query(
    tenant: str, d0: datetime, tag_ids: Collection[int] | None = None
) -> sql.Composed:
    """The carry-in query of read_carry_in (columns in RAW_CARRY_IN order), for callers that
    aggregate over it in SQL, such as the late-data fingerprint; of every tag or of `tag_ids`."""
    if d0.tzinfo is None:
        raise InvalidTimeRange("the day start must be a timezone-aware (UTC) datetime")
    s = sql.Identifier(validate_tenant_name(tenant))
    query = sql.SQL(_CARRY_IN).format(
        s=s,
        d0=sql.Literal(d0),
        resolved_at_ci=sql.SQL(_RESOLVED_AT).format(s=s, at=sql.SQL("ci.t")),
        resolved_at_cand=sql.SQL(_RESOLVED_AT).format(s=s, at=sql.SQL("cand.t")),
    )
    if tag_ids is None:
        return query
    # The planner pushes the filter down to the scan of tag_names: only these tags are probed.
    ids = sql.Literal([int(v) for v in tag_ids])
    return sql.SQL("SELECT * FROM ({}) c WHERE c.id = ANY({}::int4[])").format(query, ids)


def read_carry_in(
    conn: psycopg.Connection, tenant: str, d0: datetime, tag_ids: Collection[int] | None = None
) -> pa.Table:
    """Per tag with a row before d0: that last row (duplicates at its instant resolved as
    in SPEC), and run_begin_at, when the run of equal values it belongs to began (after a
    death, the first row after death_at). RAW_CARRY_IN, sorted by tag_id.

    Every tag costs a handful of LIMIT 1 index probes plus one per earlier instant holding a
    distinct value that resolution discarded, and the index entries of equal-valued rows the
    walk steps over; no history scan. `tag_ids` restricts it to those tags."""
    require_tenant(conn, tenant)
    with source_errors("reading the carry-in"):
        rows = conn.execute(carry_in_query(tenant, d0, tag_ids)).fetchall()
    tag_id, time, value_double, value_string, is_string, run_begin_at = _columns(rows, 6)
    return pa.Table.from_arrays(
        [
            pa.array(tag_id, pa.int32()),
            _timestamps(time),
            pa.array(value_double, pa.float64()),
            pa.array(value_string, pa.string()),
            pa.array(is_string, pa.bool_()),
            _timestamps(run_begin_at),
        ],
        schema=RAW_CARRY_IN,
    )
