"""Deterministic synthetic plant: tenants full of realistic, awkward tag history (noise,
setpoints, booleans, counters, states, deaths, births, duplicates, NaN/NULL) bulk-loaded with
COPY into the source schema, for the demo, tests and benchmarks."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import psycopg
from psycopg import sql

from tagflow.schemas.source_ddl import create_tenant
from tagflow.source.connection import libpq_url

US_PER_S = 1_000_000
US_PER_HOUR = 3600 * US_PER_S
US_PER_DAY = 24 * US_PER_HOUR
_PG_EPOCH_US = 946_684_800 * US_PER_S  # 2000-01-01, the zero of binary timestamptz
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

STATES = ("IDLE", "RUNNING", "FAULT")
MIXED_STRINGS = ("CAL", "ERR")
DEFAULT_START = date(2026, 3, 1)

# Tags with one job each, at fixed ids so tests can find them; the rest cycle through KINDS.
SPECIAL_TAGS = {
    "empty": 1,  # in tag_names, no rows at all
    "dies": 2,  # death_at mid-range, a last row exactly at death_at
    "reborn": 3,  # death_at, silence, then rows again
    "born": 4,  # first row (and birth_at) two thirds into the range
    "mixed": 5,  # rows in tag_data and tag_data_str, once at the same instant
    "constant": 6,  # a setpoint that never changes: one run across the whole range
}
KINDS = (
    "analog", "analog", "setpoint", "boolean", "analog",
    "counter", "state", "analog", "setpoint", "state",
)  # fmt: skip
MIN_TAGS = len(SPECIAL_TAGS) + KINDS.index("state") + 1  # room for one tag of every kind


@dataclass(frozen=True)
class PlantRows:
    """One tenant's generated rows as columns; times are µs since the Unix epoch (UTC)."""

    tag_id: np.ndarray  # tag_names.id, int32
    tag_name: list[str]
    birth_us: np.ndarray  # int64
    death_us: np.ndarray  # int64; meaningful where has_death
    has_death: np.ndarray  # bool
    kind: list[str]
    num_tag: np.ndarray  # int32
    num_time: np.ndarray  # int64
    num_value: np.ndarray  # float64 (NaN is a real NaN; NULLs are in num_null)
    num_null: np.ndarray  # bool
    str_tag: np.ndarray  # int32
    str_time: np.ndarray  # int64
    str_value: list[str | None]

    def checksum(self) -> str:
        """sha256 over every generated column in load order: equal seeds, equal checksums."""
        h = hashlib.sha256()
        arrays = [self.tag_id, self.birth_us, self.death_us, self.has_death, self.num_tag]
        arrays += [self.num_time, self.num_value, self.num_null, self.str_tag, self.str_time]
        for array in arrays:
            h.update(np.ascontiguousarray(array).tobytes())
        h.update("\x00".join(self.tag_name).encode())
        h.update("\x00".join("\x01" if v is None else v for v in self.str_value).encode())
        return h.hexdigest()


@dataclass(frozen=True)
class TenantSummary:
    tenant: str
    api_key: str
    tags: int
    numeric_rows: int
    string_rows: int
    checksum: str
    special_tags: dict[str, int] = field(default_factory=lambda: dict(SPECIAL_TAGS))


@dataclass(frozen=True)
class PlantSummary:
    """What generate_plant loaded: tenants with their API keys and counts, and the UTC range
    [start, end) that holds the rows."""

    tenants: tuple[TenantSummary, ...]
    start: datetime
    end: datetime
    seed: int

    @property
    def api_keys(self) -> dict[str, str]:
        return {t.tenant: t.api_key for t in self.tenants}

    @property
    def rows(self) -> dict[str, int]:
        return {t.tenant: t.numeric_rows + t.string_rows for t in self.tenants}


def demo_api_key(tenant: str, seed: int) -> str:
    """A reproducible API key for a synthetic tenant (demo data only, not a secret)."""
    digest = hashlib.blake2b(f"{seed}:{tenant}".encode(), digest_size=16, person=b"tagflow-demo")
    return "tf_demo_" + digest.hexdigest()


def _grouped_rank(tags: np.ndarray) -> np.ndarray:
    """Rank of each element within its run of equal (sorted) tag values: 0, 1, 2, …"""
    idx = np.arange(len(tags))
    starts = np.r_[True, tags[1:] != tags[:-1]] if len(tags) else np.zeros(0, bool)
    return idx - np.maximum.accumulate(np.where(starts, idx, 0))


def _random_times(
    rng: np.random.Generator, ids: np.ndarray, per_tag: float, t0: int, span: int
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson-many uniformly random µs instants per tag in [t0, t0+span), sorted by (tag,
    time)."""
    counts = rng.poisson(per_tag, size=len(ids))
    tags = np.repeat(ids, counts).astype(np.int32)
    times = t0 + rng.integers(0, span, size=len(tags), dtype=np.int64)
    order = np.lexsort((times, tags))
    return tags[order], times[order]


def plant_rows(
    *, tags: int, days: int, start: date, seed: int, rows_per_tag_day: int, tenant_index: int
) -> PlantRows:
    """Generate one tenant's plant (pure numpy, no database). Deterministic in
    (seed, tenant_index, sizes): the tenant's name does not change its data."""
    if tags < MIN_TAGS:
        raise ValueError(f"tags must be at least {MIN_TAGS} to hold every kind of tag")
    if days < 1 or rows_per_tag_day < 4:
        raise ValueError("days must be >= 1 and rows_per_tag_day >= 4")
    rng = np.random.default_rng([seed, tenant_index])
    t0 = _epoch_us(start)
    span = days * US_PER_DAY
    ids = np.arange(1, tags + 1, dtype=np.int32)
    kind = ["special"] * len(SPECIAL_TAGS) + [
        KINDS[i % len(KINDS)] for i in range(tags - len(SPECIAL_TAGS))
    ]
    by_kind = {k: ids[[i for i, x in enumerate(kind) if x == k]] for k in set(KINDS)}
    rate = float(rows_per_tag_day)
    num_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    str_parts: list[tuple[np.ndarray, np.ndarray, list[str | None]]] = []

    def analog(tag_ids: np.ndarray, per_tag: float, lo: int, width: int) -> None:
        tg, tm = _random_times(rng, tag_ids, per_tag, lo, width)
        base = rng.uniform(0, 500, size=tags + 1)[tg]
        amp = rng.uniform(1, 50, size=tags + 1)[tg]
        period = rng.uniform(2, 30, size=tags + 1)[tg] * US_PER_HOUR
        wave = np.sin(2 * np.pi * (tm - t0) / period)
        value = np.round(base + amp * wave + rng.normal(0, amp / 20), 3)
        num_parts.append((tg, tm, value))

    analog(by_kind["analog"], rate * days, t0, span)
    # Rows exactly at midnight on every day, for a subset of analog tags.
    midnight_tags = by_kind["analog"][::3]
    mt = np.repeat(midnight_tags, days)
    mtime = t0 + np.tile(np.arange(days, dtype=np.int64) * US_PER_DAY, len(midnight_tags))
    num_parts.append((mt, mtime, np.round(rng.uniform(0, 100, size=len(mt)), 2)))

    # Setpoints: logged every hour on the hour (midnight included), changing rarely.
    sp = by_kind["setpoint"]
    hours = np.arange(days * 24, dtype=np.int64) * US_PER_HOUR
    sp_tag = np.repeat(sp, len(hours))
    sp_time = t0 + np.tile(hours, len(sp))
    ch_tag, ch_time = _random_times(rng, sp, days / 2, t0, span)

    # One sortable key per (tag, time) so a single searchsorted counts each row's earlier changes.
    def key(tag: np.ndarray, time: np.ndarray) -> np.ndarray:
        return tag.astype(np.int64) * (4 * span) + (time - t0)

    changes_before = np.searchsorted(key(ch_tag, ch_time), key(sp_tag, sp_time), side="right")
    first_change = np.searchsorted(ch_tag, sp_tag, side="left")
    level = changes_before - first_change
    sp_value = rng.choice([10.0, 20.0, 50.0, 75.0], size=tags + 1)[sp_tag] + 5.0 * level
    num_parts.append((sp_tag, sp_time, sp_value))

    # Booleans: 0/1 alternating at random instants, random initial state per tag.
    bt, btime = _random_times(rng, by_kind["boolean"], rate * days / 4, t0, span)
    initial = rng.integers(0, 2, size=tags + 1)[bt]
    num_parts.append((bt, btime, ((initial + _grouped_rank(bt)) % 2).astype(np.float64)))

    # Counters: grow at a per-tag rate and reset to zero every few hours.
    ct, ctime = _random_times(rng, by_kind["counter"], rate * days / 2, t0, span)
    period_us = rng.integers(6, 30, size=tags + 1)[ct] * US_PER_HOUR
    phase = rng.integers(0, US_PER_DAY, size=tags + 1)[ct]
    per_s = rng.uniform(0.1, 5, size=tags + 1)[ct]
    num_parts.append((ct, ctime, np.floor(((ctime - t0 + phase) % period_us) / US_PER_S * per_s)))

    # State tags: strings, repeats allowed (equal consecutive values collapse into one run).
    st, stime = _random_times(rng, by_kind["state"], max(2.0, rate / 8) * days, t0, span)
    states: list[str | None] = [STATES[i] for i in rng.choice(3, size=len(st), p=[0.4, 0.5, 0.1])]
    for i in rng.choice(len(st), size=min(2, len(st)), replace=False):
        states[i] = None
    str_parts.append((st, stime, states))

    # Special tags.
    death = np.zeros(tags + 1, np.int64)
    has_death = np.zeros(tags + 1, bool)
    birth = np.full(tags + 1, t0 - 30 * US_PER_DAY, np.int64)

    dies = np.array([SPECIAL_TAGS["dies"]], np.int32)
    death[dies] = t0 + span // 2 + 123_457
    has_death[dies] = True
    analog(dies, rate * days / 2, t0, int(death[dies][0] - t0))
    num_parts.append((dies, death[dies].copy(), np.array([99.5])))  # a row exactly at death

    reborn = np.array([SPECIAL_TAGS["reborn"]], np.int32)
    death[reborn] = t0 + span // 3 + 7_777
    has_death[reborn] = True
    analog(reborn, rate * days / 3, t0, int(death[reborn][0] - t0))
    back = int(death[reborn][0]) + span // 6
    analog(reborn, rate * days / 3, back, t0 + span - back)

    born = np.array([SPECIAL_TAGS["born"]], np.int32)
    born_from = t0 + 2 * span // 3 + 31_415
    analog(born, rate * days / 3 + 1, born_from, t0 + span - born_from)
    birth[born] = num_parts[-1][1].min() if len(num_parts[-1][1]) else born_from

    mixed = np.array([SPECIAL_TAGS["mixed"]], np.int32)
    analog(mixed, rate * days / 2, t0, span)
    m_tag, m_time = _random_times(rng, mixed, 2.0 * days + 1, t0, span)
    m_vals: list[str | None] = [MIXED_STRINGS[i % 2] for i in range(len(m_tag))]
    # One instant holding both a number and a string: the string row wins on resolution.
    m_tag = np.r_[m_tag, mixed]
    mixed_numeric_times = num_parts[-1][1]
    shared = mixed_numeric_times[len(mixed_numeric_times) // 2] if len(mixed_numeric_times) else t0
    m_time = np.r_[m_time, shared]
    str_parts.append((m_tag, m_time, [*m_vals, "CAL"]))

    constant = np.array([SPECIAL_TAGS["constant"]], np.int32)
    num_parts.append((np.repeat(constant, len(hours)), t0 + hours, np.full(len(hours), 42.0)))

    num_tag = np.concatenate([p[0] for p in num_parts]).astype(np.int32)
    num_time = np.concatenate([p[1] for p in num_parts]).astype(np.int64)
    num_value = np.concatenate([p[2] for p in num_parts]).astype(np.float64)
    num_null = np.zeros(len(num_tag), bool)

    # A few NaN and NULL values among analog rows.
    candidates = np.flatnonzero(np.isin(num_tag, by_kind["analog"]))
    n_bad = max(2, len(candidates) // 1000)
    picked = rng.choice(candidates, size=2 * n_bad, replace=False)
    num_value[picked[:n_bad]] = np.nan
    num_null[picked[n_bad:]] = True

    # Duplicate instants: half repeat the row exactly, half carry another value, NaN or NULL.
    n_dup = max(8, len(num_tag) // 500)
    dup = rng.choice(np.flatnonzero(np.isin(num_tag, by_kind["analog"])), size=n_dup)
    dup_value = num_value[dup].copy()
    dup_null = num_null[dup].copy()
    other = np.arange(n_dup) % 2 == 1
    dup_value[other] = dup_value[other] + 1.0
    dup_value[np.arange(n_dup) % 6 == 3] = np.nan
    dup_null[np.arange(n_dup) % 6 == 5] = True
    num_tag = np.r_[num_tag, num_tag[dup]]
    num_time = np.r_[num_time, num_time[dup]]
    num_value = np.r_[num_value, dup_value]
    num_null = np.r_[num_null, dup_null]
    num_value[num_null] = 0.0  # keep NULL rows' payload canonical for the checksum

    str_tag = np.concatenate([p[0] for p in str_parts]).astype(np.int32)
    str_time = np.concatenate([p[1] for p in str_parts]).astype(np.int64)
    str_value = [v for p in str_parts for v in p[2]]
    # String duplicates at one instant: the greatest string wins on resolution.
    sdup = rng.choice(len(str_tag), size=min(4, len(str_tag)), replace=False)
    str_tag = np.r_[str_tag, str_tag[sdup]]
    str_time = np.r_[str_time, str_time[sdup]]
    str_value += ["RUNNING" if str_value[i] == "FAULT" else "FAULT" for i in sdup]

    # Physical order is random, as in the source: nothing may rely on insertion order.
    perm = rng.permutation(len(num_tag))
    sperm = rng.permutation(len(str_tag))
    return PlantRows(
        tag_id=ids,
        tag_name=[_tag_name(i, k) for i, k in zip(ids.tolist(), kind, strict=True)],
        birth_us=birth[1:],
        death_us=death[1:],
        has_death=has_death[1:],
        kind=[
            _special_of(i) if k == "special" else k for i, k in zip(ids.tolist(), kind, strict=True)
        ],
        num_tag=num_tag[perm],
        num_time=num_time[perm],
        num_value=num_value[perm],
        num_null=num_null[perm],
        str_tag=str_tag[sperm],
        str_time=str_time[sperm],
        str_value=[str_value[i] for i in sperm],
    )


def _special_of(tag_id: int) -> str:
    return next(name for name, i in SPECIAL_TAGS.items() if i == tag_id)


def _tag_name(tag_id: int, kind: str) -> str:
    if kind == "special":
        return f"plant/special/{_special_of(tag_id)}"
    return f"plant/area{tag_id % 7}/{kind}_{tag_id:05d}"


def _binary_copy(fields: list[tuple[str, np.ndarray]]) -> bytes:
    """A COPY BINARY payload for fixed-width, non-null columns (int4 / int8 / float8): one
    structured numpy record per row instead of a Python call per row."""
    n = len(fields[0][1])
    layout: list[tuple[str, str]] = [("nfields", ">i2")]
    for name, array in fields:
        layout += [(f"{name}_len", ">i4"), (name, ">" + array.dtype.str[1:])]
    records = np.empty(n, dtype=np.dtype(layout))
    records["nfields"] = len(fields)
    for name, array in fields:
        records[f"{name}_len"] = array.dtype.itemsize
        records[name] = array
    header = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
    return header + records.tobytes() + (-1).to_bytes(2, "big", signed=True)


def _epoch_us(day: date) -> int:
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return (midnight - _UNIX_EPOCH) // timedelta(microseconds=1)


def _ts(us: int) -> datetime:
    return _UNIX_EPOCH + timedelta(microseconds=us)


def load_plant_rows(conn: psycopg.Connection, tenant: str, rows: PlantRows) -> None:
    """Replace the tenant's tables' contents with `rows` using COPY (no INSERT per row)."""
    s = sql.Identifier(tenant)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            sql.SQL("TRUNCATE {}.tag_names, {}.tag_data, {}.tag_data_str RESTART IDENTITY").format(
                s, s, s
            )
        )
        with cur.copy(
            sql.SQL(
                "COPY {}.tag_names (id, normalized_name, birth_at, death_at) FROM STDIN"
            ).format(s)
        ) as copy:
            for i, name in enumerate(rows.tag_name):
                death = _ts(int(rows.death_us[i])) if rows.has_death[i] else None
                copy.write_row((int(rows.tag_id[i]), name, _ts(int(rows.birth_us[i])), death))
        cur.execute(
            sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), {})").format(
                sql.Literal(f"{s.as_string(conn)}.tag_names"), sql.Literal(len(rows.tag_name))
            )
        )
        valued = ~rows.num_null
        numeric = _binary_copy(
            [
                ("tag", rows.num_tag[valued].astype(np.int32)),
                ("time", rows.num_time[valued] - _PG_EPOCH_US),
                ("value", rows.num_value[valued]),
            ]
        )
        nulls = _binary_copy(
            [
                ("tag", rows.num_tag[rows.num_null].astype(np.int32)),
                ("time", rows.num_time[rows.num_null] - _PG_EPOCH_US),
            ]
        )
        target = "COPY {}.tag_data ({}) FROM STDIN (FORMAT BINARY)"
        with cur.copy(
            sql.SQL(target).format(s, sql.SQL("tag_name_id, tag_value_changed_at, tag_value"))
        ) as copy:
            copy.write(numeric)
        with cur.copy(
            sql.SQL(target).format(s, sql.SQL("tag_name_id, tag_value_changed_at"))
        ) as copy:
            copy.write(nulls)
        with cur.copy(
            sql.SQL(
                "COPY {}.tag_data_str (tag_name_id, tag_value_changed_at, tag_value) FROM STDIN"
            ).format(s)
        ) as copy:
            for tag, time, value in zip(
                rows.str_tag.tolist(), rows.str_time.tolist(), rows.str_value, strict=True
            ):
                copy.write_row((tag, _ts(time), value))
    # Fresh statistics so the planner uses the indexes the extract relies on.
    for table in ("tag_names", "tag_data", "tag_data_str"):
        conn.execute(sql.SQL("ANALYZE {}.{}").format(s, sql.Identifier(table)))


def generate_plant(
    conn_url: str,
    tenants: Sequence[str] = ("acme", "globex"),
    *,
    tags: int = 200,
    days: int = 3,
    start: date = DEFAULT_START,
    seed: int = 0,
    rows_per_tag_day: int = 96,
    api_keys: dict[str, str] | None = None,
) -> PlantSummary:
    """Create each tenant (schema, tables, role with its API key) and fill it with a
    generated plant over [start, start + days). Rerunning replaces the tenants' rows.

    `rows_per_tag_day` is the mean row count of an analog tag per day (booleans get a
    quarter, counters half, state tags an eighth; setpoints log hourly). Tenant i uses the
    random stream (seed, i), so equal seeds give equal plants whatever the tenant names.

    API keys default to demo_api_key(tenant, seed). Needs a role that may create roles."""
    summaries = []
    with psycopg.connect(libpq_url(conn_url), autocommit=True) as conn:
        for index, tenant in enumerate(tenants):
            key = (api_keys or {}).get(tenant) or demo_api_key(tenant, seed)
            create_tenant(conn, tenant, key)
            rows = plant_rows(
                tags=tags,
                days=days,
                start=start,
                seed=seed,
                rows_per_tag_day=rows_per_tag_day,
                tenant_index=index,
            )
            load_plant_rows(conn, tenant, rows)
            summaries.append(
                TenantSummary(
                    tenant=tenant,
                    api_key=key,
                    tags=len(rows.tag_id),
                    numeric_rows=len(rows.num_tag),
                    string_rows=len(rows.str_tag),
                    checksum=rows.checksum(),
                )
            )
    begin = datetime(start.year, start.month, start.day, tzinfo=UTC)
    return PlantSummary(
        tenants=tuple(summaries), start=begin, end=begin + timedelta(days=days), seed=seed
    )
