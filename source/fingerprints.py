"""Cheap fingerprints of exactly what a tenant-day partition reads from the source: the day's
rows of both tables, the carry-in (with its run start) and the tag list, aggregated in SQL.

A late row, a late row before the day that changes the carry-in or a run's start, or a new
death_at all change the fingerprint of the days they affect, which is how the late-data sensor
knows what to re-materialise.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from tagflow.source.connection import source_errors
from tagflow.source.extract import carry_in_query, day_rows_query
from tagflow.source.tenants import require_tenant

# Order-independent checksums: the sum of a 64-bit hash of each row's text form (the session
# runs in UTC and PostgreSQL prints floats exactly, so the text is stable). Summed as numeric,
# so duplicates count and nothing overflows.
_FINGERPRINT = """
SELECT d.n, d.last_time, d.checksum, c.n, c.checksum, t.n, t.checksum
  FROM (SELECT count(*) AS n, max(r.time) AS last_time,
               coalesce(sum(hashtextextended(r::text, 0)::numeric), 0) AS checksum
          FROM ({day_rows}) r) d,
       (SELECT count(*) AS n,
               coalesce(sum(hashtextextended(ci::text, 0)::numeric), 0) AS checksum
          FROM ({carry_in}) ci) c,
       (SELECT count(*) AS n,
               coalesce(sum(hashtextextended(tn::text, 0)::numeric), 0) AS checksum
          FROM (SELECT id, normalized_name, death_at FROM {s}.tag_names) tn) t
"""


@dataclass(frozen=True)
class DayFingerprint:
    """What one tenant-day reads: row count and latest row time of the day, and checksums of
    the day's rows, the carry-in and the tag list."""

    rows: int
    last_time: datetime | None
    rows_checksum: str
    carry_in_rows: int
    carry_in_checksum: str
    tags: int
    tags_checksum: str

    @property
    def version(self) -> str:
        """A short stable string for Dagster's data version: equal iff every part is equal."""
        parts = "|".join(str(v) for v in vars(self).values())
        return hashlib.blake2b(parts.encode(), digest_size=10).hexdigest()


def day_fingerprint(
    conn: psycopg.Connection, tenant: str, day_start: datetime, day_end: datetime
) -> DayFingerprint:
    """The fingerprint of [day_start, day_end) for `tenant`; one statement, read only."""
    require_tenant(conn, tenant)
    query = sql.SQL(_FINGERPRINT).format(
        day_rows=day_rows_query(tenant, day_start, day_end, None),
        carry_in=carry_in_query(tenant, day_start),
        s=sql.Identifier(tenant),
    )
    with source_errors("fingerprinting a day"):
        row = conn.execute(query).fetchone()
    n, last_time, checksum, carry_n, carry_checksum, tags_n, tags_checksum = row
    return DayFingerprint(
        rows=n,
        last_time=last_time,
        rows_checksum=str(checksum),
        carry_in_rows=carry_n,
        carry_in_checksum=str(carry_checksum),
        tags=tags_n,
        tags_checksum=str(tags_checksum),
    )
