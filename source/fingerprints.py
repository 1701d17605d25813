"""Fingerprints of exactly what a tenant-day partition reads from the source: the day's rows of
both tables, the carry-in (with its run start) and the tag list.

One definition, computed two ways that agree to the bit: here, over the Arrow batches the
extraction already streams (no second pass over the day), and in SQL, where the late-data
sensor computes it without reading the rows out. Each row hashes to 64 bits with PostgreSQL's
own hash functions (`hashint8extended`, `hashfloat8extended`; ported in pg_hash) and the first
8 bytes of the MD5 of a string; a part's checksum is the sum of its row hashes modulo 2^64, so
row order does not matter and duplicates count. A late row, a late row before the day that
changes the carry-in or a run's start, or a new death_at changes the fingerprint of every day
it affects: that is how the late-data sensor knows what to re-materialise.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from tagflow.source.connection import source_errors
from tagflow.source.derived_history import derived_day_version
from tagflow.source.extract import carry_in_query, day_rows_query
from tagflow.source.pg_hash import hashfloat8extended, hashint8extended
from tagflow.source.tenants import require_tenant
from tagflow.transforms.derived.definitions import TenantDerivedTags

# A row's time and tag are hashed as one int8, the time xor the tag id times an odd constant
# (|id| < 2^31, so the product never overflows int8 in SQL); every hash is unseeded, which
# PostgreSQL's lookup3 computes with one round less.
_TAG_MIX = 2654435761
# Stand-ins that keep the parts of a row hash apart (a NULL number is not a NULL string; a run
# start is not a row time).
_NULL_NUMBER = 2
_NULL_STRING = 3
_RUN_BEGIN_MIX = 0x5F3759DF
_NO_RUN_BEGIN = 5
_TAG_KEY_MIX = 0x2545F491
_DEATH_MIX = 0x27D4EB2F
_NO_DEATH = 8
_MOD = 1 << 64

# Microseconds since the Unix epoch, exactly (extract returns numeric).
_US = "(extract(epoch FROM {}) * 1000000)::int8"
_MD5_64 = "('x' || left(md5({}), 16))::bit(64)::int8"
_VALUE_HASH = (
    "CASE WHEN {is_string} THEN coalesce(" + _MD5_64.format("{vs}") + f", {_NULL_STRING})"
    " ELSE coalesce(hashfloat8extended({vd}, 0), " + f"{_NULL_NUMBER}) END"
)
_ROW_HASH = (
    "hashint8extended("
    + _US.format("{t}")
    + f" # ({{tag}}::int8 * {_TAG_MIX}), 0) # "
    + _VALUE_HASH
)

_FINGERPRINT = f"""
SELECT d.n, d.last_time, d.checksum, c.n, c.checksum, t.n, t.checksum
  FROM (SELECT count(*) AS n, max(r.time) AS last_time,
               coalesce(sum(({
    _ROW_HASH.format(
        t="r.time",
        tag="r.tag_id",
        is_string="r.is_string",
        vs="r.value_string",
        vd="r.value_double",
    )
})::numeric), 0) AS checksum
          FROM ({{day_rows}}) r) d,
       (SELECT count(*) AS n,
               coalesce(sum(({
    _ROW_HASH.format(t="ci.t", tag="ci.id", is_string="ci.is_string", vs="ci.vs", vd="ci.vd")
}
                             # coalesce(hashint8extended({_US.format("ci.run_begin_at")}
                                                         # {_RUN_BEGIN_MIX}, 0),
                                        {_NO_RUN_BEGIN}))::numeric), 0) AS checksum
          FROM ({{carry_in}}) ci) c,
       (SELECT count(*) AS n,
               coalesce(sum((hashint8extended(tn.id::int8 * {_TAG_MIX} # {_TAG_KEY_MIX}, 0)
                             # {_MD5_64.format("tn.normalized_name")}
                             # coalesce(CASE WHEN isfinite(tn.death_at) THEN
                                        hashint8extended({_US.format("tn.death_at")}
                                                         # {_DEATH_MIX}, 0) END,
                                        {_NO_DEATH}))::numeric), 0) AS checksum
          FROM {{s}}.tag_names tn) t
"""


@dataclass(frozen=True)
class DayFingerprint:
    """What one tenant-day reads: row count and latest row time of the day, and checksums of
    the day's rows, the carry-in and the tag list."""

    rows: int
    last_time: datetime | None
    rows_checksum: int
    carry_in_rows: int
    carry_in_checksum: int
    tags: int
    tags_checksum: int
    # The derived tags' part (transforms.derived.day.derived_version): their definitions and
    # the starts of their runs at 00:00; "" when no derived tag can have a value that day.
    derived: str = ""

    @property
    def version(self) -> str:
        """A short stable string for Dagster's data version: equal iff every part is equal.
        An empty derived part is left out, so versions recorded before derived tags existed
        still match."""
        values = [v for k, v in vars(self).items() if k != "derived" or v]
        parts = "|".join(str(v) for v in values)
        return hashlib.blake2b(parts.encode(), digest_size=10).hexdigest()


def _micros(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return pc.fill_null(column.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)


def _md5_64(strings: pa.ChunkedArray | pa.Array, null_as: int) -> np.ndarray:
    """First 8 bytes of each string's MD5 as int64; only distinct strings are hashed."""
    encoded = pc.dictionary_encode(
        strings.combine_chunks() if hasattr(strings, "chunks") else strings
    )
    digests = np.array(
        [
            int.from_bytes(hashlib.md5(s.encode()).digest()[:8], "big", signed=True)
            for s in encoded.dictionary.to_pylist()
        ]
        + [null_as],
        dtype=np.int64,
    )
    indices = pc.fill_null(encoded.indices, len(digests) - 1)
    return digests[indices.to_numpy(zero_copy_only=False)]


def _row_hashes(table: pa.Table | pa.RecordBatch, tag_column: str) -> np.ndarray:
    """The hash of each RAW_ROWS / RAW_CARRY_IN row: its time and tag, xor its value."""
    tag = table.column(tag_column).to_numpy(zero_copy_only=False).astype(np.int64)
    time = _micros(table.column("time"))
    is_string = pc.fill_null(table.column("is_string"), False).to_numpy(zero_copy_only=False)
    number = table.column("value_double")
    numbers = hashfloat8extended(pc.fill_null(number, 0.0).to_numpy(zero_copy_only=False), 0)
    numbers = np.where(number.is_null().to_numpy(zero_copy_only=False), _NULL_NUMBER, numbers)
    values = numbers
    if is_string.any():
        strings = _md5_64(table.column("value_string"), _NULL_STRING)
        values = np.where(is_string, strings, numbers)
    return hashint8extended(time ^ (tag * _TAG_MIX), 0) ^ values


def _wrapping_sum(hashes: np.ndarray) -> int:
    return int(hashes.view(np.uint64).sum(dtype=np.uint64))


class RowsFingerprint:
    """The day-rows part, accumulated over the RAW_ROWS batches of the extraction stream."""

    def __init__(self) -> None:
        self.rows = 0
        self.checksum = 0
        self.last_time: int | None = None

    def add(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        self.rows += batch.num_rows
        self.checksum = (self.checksum + _wrapping_sum(_row_hashes(batch, "tag_id"))) % _MOD
        latest = pc.max(batch.column("time").cast(pa.int64())).as_py()
        self.last_time = latest if self.last_time is None else max(self.last_time, latest)


def stream_fingerprint(
    rows: RowsFingerprint, raw_carry_in: pa.Table, tags: pa.Table, derived: str = ""
) -> DayFingerprint:
    """The day's fingerprint from what its extraction read: the streamed rows, the raw carry-in
    (RAW_CARRY_IN), the tag list (TAGS, source tags only) and the derived tags' part."""
    carry = _row_hashes(raw_carry_in, "tag_id")
    run_begin = raw_carry_in.column("run_begin_at")
    run_hash = hashint8extended(_micros(run_begin) ^ _RUN_BEGIN_MIX, 0)
    carry ^= np.where(run_begin.is_null().to_numpy(zero_copy_only=False), _NO_RUN_BEGIN, run_hash)
    death = tags.column("death_at")
    death_hash = hashint8extended(_micros(death) ^ _DEATH_MIX, 0)
    tag_ids = tags.column("tag_id").to_numpy().astype(np.int64)
    tag_hashes = (
        hashint8extended((tag_ids * _TAG_MIX) ^ _TAG_KEY_MIX, 0)
        ^ _md5_64(tags.column("tag_name"), 0)
        ^ np.where(death.is_null().to_numpy(zero_copy_only=False), _NO_DEATH, death_hash)
    )
    last_time = None
    if rows.last_time is not None:
        last_time = pa.scalar(rows.last_time, pa.timestamp("us", tz="UTC")).as_py()
    return DayFingerprint(
        rows=rows.rows,
        last_time=last_time,
        rows_checksum=rows.checksum,
        carry_in_rows=raw_carry_in.num_rows,
        carry_in_checksum=_wrapping_sum(carry),
        tags=tags.num_rows,
        tags_checksum=_wrapping_sum(tag_hashes),
        derived=derived,
    )


def day_fingerprint(
    conn: psycopg.Connection,
    tenant: str,
    day_start: datetime,
    day_end: datetime,
    derived: TenantDerivedTags | None = None,
) -> DayFingerprint:
    """The fingerprint of [day_start, day_end) for `tenant`, in SQL; one statement, read only,
    and, with the tenant's `derived` tags, their part from index probes."""
    require_tenant(conn, tenant)
    query = sql.SQL(_FINGERPRINT).format(
        day_rows=day_rows_query(tenant, day_start, day_end, None),
        carry_in=carry_in_query(tenant, day_start),
        s=sql.Identifier(tenant),
    )
    with source_errors("fingerprinting a day"):
        row = conn.execute(query).fetchone()
    if row is None:  # an aggregate without GROUP BY always answers one row
        raise RuntimeError("the day's fingerprint query returned no row")
    n, last_time, checksum, carry_n, carry_checksum, tags_n, tags_checksum = row
    return DayFingerprint(
        rows=n,
        last_time=last_time,
        rows_checksum=int(checksum) % _MOD,
        carry_in_rows=carry_n,
        carry_in_checksum=int(carry_checksum) % _MOD,
        tags=tags_n,
        tags_checksum=int(tags_checksum) % _MOD,
        derived=derived_day_version(conn, tenant, derived, day_start, day_end) if derived else "",
    )
