"""The source reads of derived tags (DESIGN §8) beyond the day's stream: their inputs' rows
before a day (the walk back to the start of a run held at 00:00), each input's first row, and,
for the late-data sensor, the derived part of a day's data version computed without reading the
day's rows. Every read is a range or LIMIT 1 probe of a (tag_name_id, time) index, restricted to
the few tags the derived tags read, always in the tenant's own schema.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
from psycopg import sql

from tagflow.names import validate_tenant_name
from tagflow.schemas.arrow import RAW_ROWS, TAGS, TS, conform
from tagflow.source.connection import source_errors
from tagflow.source.extract import read_carry_in
from tagflow.transforms.columns import NO_TIME
from tagflow.transforms.derived.day import (
    DerivedPlan,
    derived_carry_in,
    derived_version,
    present_tags,
)
from tagflow.transforms.derived.definitions import TenantDerivedTags
from tagflow.transforms.transitions import carry_in_for_day

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Rows of tag w.id in [lo, w.hi): one index range scan per tag and table.
_ROWS_BEFORE = """
SELECT w.id, d.tag_value_changed_at, d.tag_value, NULL::text, false
  FROM unnest({ids}::int4[], {his}::timestamptz[]) AS w(id, hi)
 CROSS JOIN LATERAL (
    SELECT tag_value_changed_at, tag_value FROM {s}.tag_data
     WHERE tag_name_id = w.id AND tag_value_changed_at >= {lo} AND tag_value_changed_at < w.hi
 ) d
UNION ALL
SELECT w.id, x.tag_value_changed_at, NULL::float8, x.tag_value, true
  FROM unnest({ids}::int4[], {his}::timestamptz[]) AS w(id, hi)
 CROSS JOIN LATERAL (
    SELECT tag_value_changed_at, tag_value FROM {s}.tag_data_str
     WHERE tag_name_id = w.id AND tag_value_changed_at >= {lo} AND tag_value_changed_at < w.hi
 ) x
"""

# Each tag's earliest row with a finite time: a LIMIT 1 probe per tag and table.
_FIRST_ROWS = """
SELECT w.id, LEAST(
    (SELECT tag_value_changed_at FROM {s}.tag_data
      WHERE tag_name_id = w.id
        AND tag_value_changed_at > '-infinity' AND tag_value_changed_at < 'infinity'
      ORDER BY tag_name_id, tag_value_changed_at ASC LIMIT 1),
    (SELECT tag_value_changed_at FROM {s}.tag_data_str
      WHERE tag_name_id = w.id
        AND tag_value_changed_at > '-infinity' AND tag_value_changed_at < 'infinity'
      ORDER BY tag_name_id, tag_value_changed_at ASC LIMIT 1))
  FROM unnest({ids}::int4[]) AS w(id)
"""

# The tags with a row in [d0, d1): a LIMIT 1 probe per tag and table. Written as lateral
# probes, not EXISTS, which the planner may turn into a scan of the whole day.
_WITH_ROWS = """
SELECT w.id
  FROM unnest({ids}::int4[]) AS w(id)
  LEFT JOIN LATERAL (SELECT true AS x FROM {s}.tag_data
                      WHERE tag_name_id = w.id
                        AND tag_value_changed_at >= {d0} AND tag_value_changed_at < {d1}
                      ORDER BY tag_name_id, tag_value_changed_at DESC LIMIT 1) num ON true
  LEFT JOIN LATERAL (SELECT true AS x FROM {s}.tag_data_str
                      WHERE tag_name_id = w.id
                        AND tag_value_changed_at >= {d0} AND tag_value_changed_at < {d1}
                      ORDER BY tag_name_id, tag_value_changed_at DESC LIMIT 1) str ON true
 WHERE num.x OR str.x
"""

# Tags by name (no value_kind probes: the data version does not depend on it).
_NAMED_TAGS = """
SELECT id, normalized_name,
       CASE WHEN isfinite(birth_at) THEN birth_at END,
       CASE WHEN isfinite(death_at) THEN death_at END
  FROM {s}.tag_names WHERE normalized_name = ANY({names}::text[])
 ORDER BY id
"""


def _time(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))


def _ids(tag_ids: Collection[int]) -> sql.Literal:
    return sql.Literal([int(v) for v in tag_ids])


class SourceHistory:
    """The inputs' history (transforms.derived.day.InputHistory) on an open session of the
    tenant's source."""

    def __init__(self, conn: psycopg.Connection, tenant: str) -> None:
        self._conn = conn
        self._schema = sql.Identifier(validate_tenant_name(tenant))

    def rows_before(self, tag_ids: np.ndarray, lo_us: int, hi_us: np.ndarray) -> pa.Table:
        query = sql.SQL(_ROWS_BEFORE).format(
            s=self._schema,
            ids=_ids(tag_ids),
            his=sql.Literal([_time(v) for v in hi_us]),
            lo=sql.Literal(_time(lo_us)),
        )
        with source_errors("reading the history of derived tags' inputs"):
            rows = self._conn.execute(query).fetchall()
        columns: list[Sequence[Any]] = (
            list(zip(*rows, strict=True)) if rows else [[] for _ in range(5)]
        )
        return pa.Table.from_arrays(
            [
                pa.array(columns[0], pa.int32()),
                pa.array(columns[1], TS),
                pa.array(columns[2], pa.float64()),
                pa.array(columns[3], pa.string()),
                pa.array(columns[4], pa.bool_()),
            ],
            schema=RAW_ROWS,
        )

    def first_row_times(self, tag_ids: np.ndarray) -> np.ndarray:
        query = sql.SQL(_FIRST_ROWS).format(s=self._schema, ids=_ids(tag_ids))
        with source_errors("reading the first rows of derived tags' inputs"):
            rows: dict[int, datetime] = dict(self._conn.execute(query).fetchall())
        first = [rows.get(int(tag_id)) for tag_id in tag_ids]
        return np.array(
            [NO_TIME if t is None else (t - _EPOCH) // timedelta(microseconds=1) for t in first],
            dtype=np.int64,
        )

    def ids_with_rows(self, tag_ids: Collection[int], d0: datetime, d1: datetime) -> set[int]:
        """The tags of `tag_ids` with a row in [d0, d1)."""
        query = sql.SQL(_WITH_ROWS).format(
            s=self._schema, ids=_ids(tag_ids), d0=sql.Literal(d0), d1=sql.Literal(d1)
        )
        with source_errors("probing the rows of derived tags' inputs"):
            return {row[0] for row in self._conn.execute(query).fetchall()}

    def named_tags(self, names: Sequence[str]) -> pa.Table:
        """TAGS rows (without value_kind) of the source tags called `names`."""
        query = sql.SQL(_NAMED_TAGS).format(s=self._schema, names=sql.Literal(list(names)))
        with source_errors("reading the tags derived tags read"):
            rows = self._conn.execute(query).fetchall()
        columns: list[Sequence[Any]] = (
            list(zip(*rows, strict=True)) if rows else [[] for _ in range(4)]
        )
        ids, tag_names, births, deaths = columns
        table = pa.table(
            {
                "tag_id": pa.array(ids, pa.int32()),
                "tag_name": pa.array(tag_names, pa.string()),
                "birth_at": pa.array(births, TS),
                "death_at": pa.array(deaths, TS),
                "value_kind": pa.nulls(len(ids), pa.string()),
            }
        )
        return conform(table, TAGS)


def derived_day_version(
    conn: psycopg.Connection,
    tenant: str,
    definitions: TenantDerivedTags,
    day_start: datetime,
    day_end: datetime,
) -> str:
    """The derived part of a tenant-day's data version (transforms.derived.day.derived_version),
    as the day step computes it from what it streams, but from index probes alone: the inputs'
    carry-in, which inputs have rows that day, and the walk back of each run held at 00:00."""
    if not len(definitions):
        return ""
    history = SourceHistory(conn, tenant)
    plan = DerivedPlan.of(definitions, history.named_tags(definitions.source_inputs))
    ids = plan.input_ids.tolist()
    raw_carry_in = read_carry_in(conn, tenant, day_start, ids)
    carry_in = carry_in_for_day(raw_carry_in, plan.input_order, day_start)
    with_rows = history.ids_with_rows(ids, day_start, day_end)
    names = dict(zip(ids, plan.input_order.tag_name.to_pylist(), strict=True))
    have = {names[i] for i in with_rows} | set(carry_in.column("tag_name").to_pylist())
    present = present_tags(plan, have)
    if not present:
        return ""
    derived_carry = derived_carry_in(plan, carry_in, day_start, history)
    return derived_version(plan, present, derived_carry)
