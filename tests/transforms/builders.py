"""Turn a raw history (the reference's plain-Python inputs) into the implementation's
inputs, call the transforms exactly as SPEC.md names them, and turn their Arrow
outputs back into plain rows (timestamps as µs integers) for comparison.

The raw carry-in is computed here by straightforward Python over the history (in
production a SQL query does it): per tag id the last resolved row before the day and
the time the run of equal values holding it began (walking back over equal values,
stopping at a death in between).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from tagflow.schemas import arrow as S
from tests.transforms.reference import (
    NUMERIC,
    STRING,
    RawRow,
    Tag,
    numeric_sort_key,
    string_sort_key,
    values_equal,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MINUTE = 60 * 1_000_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def us(text: str) -> int:
    """'2026-03-02 01:15[:SS[.ffffff]]' (UTC) → µs since the epoch."""
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            dt = datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        return to_us(dt)
    raise ValueError(text)


def to_us(dt: datetime) -> int:
    delta = dt - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def to_dt(t_us: int | None) -> datetime | None:
    return None if t_us is None else EPOCH + timedelta(microseconds=t_us)


def to_td(d_us: int) -> timedelta:
    return timedelta(microseconds=d_us)


def _raw(rows: Iterable) -> list[RawRow]:
    return [r if isinstance(r, RawRow) else RawRow(*r) for r in rows]


# ---------------------------------------------------------------- inputs


def tags_table(tags: Iterable[Tag], rows: Iterable) -> pa.Table:
    """TAGS snapshot; value_kind from the whole history (null for a tag without rows)."""
    rows = _raw(rows)
    kinds: dict[int, set] = {}
    for r in rows:
        kinds.setdefault(r.tag_id, set()).add(STRING if r.is_string else NUMERIC)
    cols = {name: [] for name in S.TAGS.names}
    for t in tags:
        k = kinds.get(t.tag_id, set())
        cols["tag_id"].append(t.tag_id)
        cols["tag_name"].append(t.name)
        cols["birth_at"].append(to_dt(t.birth_at_us if t.birth_at_us is not None else 0))
        cols["death_at"].append(to_dt(t.death_at_us))
        cols["value_kind"].append(None if not k else ("mixed" if len(k) == 2 else next(iter(k))))
    return pa.table(cols, schema=S.TAGS)


def raw_rows_table(rows: Iterable, lo: int, hi: int) -> pa.Table:
    """The day's RAW_ROWS: rows with lo <= time < hi, unresolved, in history order."""
    cols = {name: [] for name in S.RAW_ROWS.names}
    for r in _raw(rows):
        if not lo <= r.time_us < hi:
            continue
        cols["tag_id"].append(r.tag_id)
        cols["time"].append(to_dt(r.time_us))
        cols["value_double"].append(None if r.is_string else r.value)
        cols["value_string"].append(r.value if r.is_string else None)
        cols["is_string"].append(r.is_string)
    return pa.table(cols, schema=S.RAW_ROWS)


def _resolve_instant(group: list[RawRow]) -> RawRow:
    strings = [r for r in group if r.is_string]
    if strings:
        return max(strings, key=lambda r: string_sort_key(r.value))
    return max(group, key=lambda r: numeric_sort_key(r.value))


def raw_carry_in_rows(rows: Iterable, tags: Iterable[Tag], at: int) -> list[dict]:
    """What the source query returns for a day starting at `at`: for every tag id with
    rows before `at` (orphans and dead tags included: carry_in_for_day filters them),
    the last resolved row and the start of its run of equal values."""
    deaths = {t.tag_id: t.death_at_us for t in tags}
    by_tag: dict[int, dict[int, list[RawRow]]] = {}
    for r in _raw(rows):
        if r.time_us < at:
            by_tag.setdefault(r.tag_id, {}).setdefault(r.time_us, []).append(r)
    out = []
    for tag_id in sorted(by_tag):
        instants = sorted(by_tag[tag_id])
        resolved = [_resolve_instant(by_tag[tag_id][t]) for t in instants]
        death = deaths.get(tag_id)
        k = len(resolved) - 1
        last = resolved[k]
        while k > 0:
            prev, cur = resolved[k - 1], resolved[k]
            died_between = death is not None and prev.time_us <= death < cur.time_us
            same = values_equal(
                STRING if prev.is_string else NUMERIC,
                prev.value,
                STRING if cur.is_string else NUMERIC,
                cur.value,
            )
            if died_between or not same:
                break
            k -= 1
        out.append(
            {
                "tag_id": tag_id,
                "time": to_dt(last.time_us),
                "value_double": None if last.is_string else last.value,
                "value_string": last.value if last.is_string else None,
                "is_string": last.is_string,
                "run_begin_at": to_dt(resolved[k].time_us),
            }
        )
    return out


def raw_carry_in_table(rows: Iterable, tags: Iterable[Tag], at: int) -> pa.Table:
    return pa.Table.from_pylist(raw_carry_in_rows(rows, tags, at), schema=S.RAW_CARRY_IN)


# ---------------------------------------------------------------- calls


def call_resolve(raw_rows: pa.Table, tags: pa.Table):
    from tagflow.transforms.transitions import resolve_rows

    return resolve_rows(raw_rows, tags)


def call_carry_in(raw_carry_in: pa.Table, tags: pa.Table, day_start: int) -> pa.Table:
    from tagflow.transforms.transitions import carry_in_for_day

    return carry_in_for_day(raw_carry_in, tags, to_dt(day_start))


def call_spans(transitions, carry_in, d0: int, d1: int, tags, tenant: str) -> pa.Table:
    from tagflow.transforms.spans import spans_for_day

    return spans_for_day(transitions, carry_in, to_dt(d0), to_dt(d1), tags, tenant)


def call_samples(transitions, carry_in, ws: int, we: int, width: int, tags, offset: int = 0):
    from tagflow.transforms.samples import samples

    return samples(
        transitions, carry_in, to_dt(ws), to_dt(we), to_td(width), tags, offset=to_td(offset)
    )


def call_rollup(table: pa.Table, to_width: int, offset: int = 0) -> pa.Table:
    from tagflow.transforms.rollup import rollup

    return rollup(table, to_td(to_width), offset=to_td(offset))


class Window:
    """The implementation's inputs and outputs for one window [start, end) of a history:
    the window's raw rows and the raw carry-in at `start`, as a day partition gets them."""

    def __init__(self, rows, tags, start: int, end: int, tenant: str = "acme"):
        self.rows = _raw(rows)
        self.tags = list(tags)
        self.start, self.end, self.tenant = start, end, tenant
        self.tags_tbl = tags_table(self.tags, self.rows)
        self.raw_rows = raw_rows_table(self.rows, start, end)
        self.raw_carry_in = raw_carry_in_table(self.rows, self.tags, start)
        self.transitions, self.stats = call_resolve(self.raw_rows, self.tags_tbl)
        self.carry_in = call_carry_in(self.raw_carry_in, self.tags_tbl, start)

    def spans(self) -> pa.Table:
        return call_spans(
            self.transitions, self.carry_in, self.start, self.end, self.tags_tbl, self.tenant
        )

    def samples(self, width: int, offset: int = 0):
        return call_samples(
            self.transitions, self.carry_in, self.start, self.end, width, self.tags_tbl, offset
        )


# ---------------------------------------------------------------- outputs


def plain_rows(table: pa.Table, schema: pa.Schema) -> list[dict]:
    """Check the exact schema, then rows as dicts with timestamps as µs integers."""
    assert table.schema.equals(schema, check_metadata=False), (
        f"schema mismatch:\n{table.schema}\n!=\n{schema}"
    )
    cols = []
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            col = pc.cast(col, pa.int64())
        cols.append(col)
    return pa.table(cols, names=table.column_names).to_pylist()


def float_equal(a, b, rel: float = 1e-9, abs_tol: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)


def rows_equal(actual: dict, expected: dict) -> bool:
    if set(actual) != set(expected):
        return False
    for k, e in expected.items():
        a = actual[k]
        if k == "held_s":
            if [s for s, _ in a] != [s for s, _ in e]:
                return False
            if not all(float_equal(x, y) for (_, x), (_, y) in zip(a, e, strict=True)):
                return False
        elif isinstance(a, float) or isinstance(e, float):
            if isinstance(a, str) or isinstance(e, str) or not float_equal(a, e):
                return False
        elif (a is None) != (e is None) or a != e:
            return False
    return True


TIME_COLUMNS = {
    "time",
    "run_begin_at",
    "raw_begin_at",
    "raw_end_at",
    "begin_at",
    "end_at",
    "bucket_start",
}


def _fmt(row: dict) -> str:
    out = {}
    for k, v in row.items():
        if k in TIME_COLUMNS and isinstance(v, int):
            out[k] = to_dt(v).strftime("%m-%d %H:%M:%S.%f")
        else:
            out[k] = v
    return repr(out)


def assert_rows_equal(actual: list[dict], expected: list[dict], what: str = "rows") -> None:
    """Same length, same order, every column equal (floats within 1e-9 relative)."""
    lines = []
    n = max(len(actual), len(expected))
    mismatch = len(actual) != len(expected)
    for i in range(n):
        a = actual[i] if i < len(actual) else None
        e = expected[i] if i < len(expected) else None
        ok = a is not None and e is not None and rows_equal(a, e)
        mismatch |= not ok
        if not ok:
            lines.append(
                f"  [{i}] actual:   {_fmt(a) if a else None}\n"
                f"       expected: {_fmt(e) if e else None}"
            )
    if mismatch:
        raise AssertionError(
            f"{what}: {len(actual)} actual vs {len(expected)} expected rows; differing rows:\n"
            + "\n".join(lines[:20])
        )
