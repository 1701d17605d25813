"""Deterministic synthetic plant: tenants full of realistic, awkward tag history (noise,
setpoints, booleans, counters, states, deaths, births, duplicates, NaN/NULL) bulk-loaded with
COPY into the source schema, for the demo, tests and benchmarks."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

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


class _Rows(NamedTuple):
    """Rows of some tags as columns, in generation order: tag ids, µs times and values (floats
    for tag_data, strings or None for tag_data_str)."""

    tag: np.ndarray
    time: np.ndarray
    value: np.ndarray | list[str | None]


@dataclass(frozen=True)
class _Plant:
    """What every generator of one tenant shares: its random stream (each generator draws in
    turn, so the order of the calls is part of the data), the range and the sizes."""

    rng: np.random.Generator
    start_us: int
    span_us: int
    days: int
    tag_count: int
    rows_per_tag_day: float

    @property
    def end_us(self) -> int:
        return self.start_us + self.span_us

    def mean_rows(self, divisor: float) -> float:
        """Mean rows per tag over the range of a kind logging `divisor` times less often than
        an analog tag."""
        return self.rows_per_tag_day * self.days / divisor

    def per_tag(self, low: float, high: float, tags: np.ndarray) -> np.ndarray:
        """One uniform draw per tag id of the tenant, looked up for each row's tag."""
        return self.rng.uniform(low, high, size=self.tag_count + 1)[tags]

    def integer_per_tag(self, low: int, high: int, tags: np.ndarray) -> np.ndarray:
        return self.rng.integers(low, high, size=self.tag_count + 1)[tags]


@dataclass(frozen=True)
class _Lifetimes:
    """birth_at and death_at of every tag, indexed by tag id (index 0 unused)."""

    birth_us: np.ndarray
    death_us: np.ndarray
    has_death: np.ndarray

    @classmethod
    def alive_throughout(cls, plant: _Plant) -> _Lifetimes:
        return cls(
            birth_us=np.full(plant.tag_count + 1, plant.start_us - 30 * US_PER_DAY, np.int64),
            death_us=np.zeros(plant.tag_count + 1, np.int64),
            has_death=np.zeros(plant.tag_count + 1, bool),
        )

    def dies(self, tag: np.ndarray, at_us: int) -> None:
        self.death_us[tag] = at_us
        self.has_death[tag] = True


def plant_rows(
    *, tags: int, days: int, start: date, seed: int, rows_per_tag_day: int, tenant_index: int
) -> PlantRows:
    """Generate one tenant's plant (pure numpy, no database). Deterministic in
    (seed, tenant_index, sizes): the tenant's name does not change its data."""
    if tags < MIN_TAGS:
        raise ValueError(f"tags must be at least {MIN_TAGS} to hold every kind of tag")
    if days < 1 or rows_per_tag_day < 4:
        raise ValueError("days must be >= 1 and rows_per_tag_day >= 4")
    plant = _Plant(
        rng=np.random.default_rng([seed, tenant_index]),
        start_us=_epoch_us(start),
        span_us=days * US_PER_DAY,
        days=days,
        tag_count=tags,
        rows_per_tag_day=float(rows_per_tag_day),
    )
    ids = np.arange(1, tags + 1, dtype=np.int32)
    kinds = ["special"] * len(SPECIAL_TAGS) + [
        KINDS[i % len(KINDS)] for i in range(tags - len(SPECIAL_TAGS))
    ]
    by_kind = {k: ids[[i for i, x in enumerate(kinds) if x == k]] for k in set(KINDS)}
    lifetimes = _Lifetimes.alive_throughout(plant)
    numeric = [
        _analog_rows(plant, by_kind["analog"], plant.mean_rows(1), plant.start_us, plant.span_us),
        _midnight_rows(plant, by_kind["analog"][::3]),
        _setpoint_rows(plant, by_kind["setpoint"]),
        _boolean_rows(plant, by_kind["boolean"]),
        _counter_rows(plant, by_kind["counter"]),
    ]
    strings = [_state_rows(plant, by_kind["state"])]
    numeric += _dies_rows(plant, lifetimes)
    numeric += _reborn_rows(plant, lifetimes)
    numeric.append(_born_rows(plant, lifetimes))
    mixed_numbers, mixed_strings = _mixed_rows(plant)
    numeric.append(mixed_numbers)
    strings.append(mixed_strings)
    numeric.append(_constant_rows(plant))

    num_tag, num_time, num_value, num_null = _numeric_columns(plant, numeric, by_kind["analog"])
    str_tag, str_time, str_value = _string_columns(plant, strings)
    # Physical order is random, as in the source: nothing may rely on insertion order.
    numeric_order = plant.rng.permutation(len(num_tag))
    string_order = plant.rng.permutation(len(str_tag))
    return PlantRows(
        tag_id=ids,
        tag_name=[_tag_name(i, k) for i, k in zip(ids.tolist(), kinds, strict=True)],
        birth_us=lifetimes.birth_us[1:],
        death_us=lifetimes.death_us[1:],
        has_death=lifetimes.has_death[1:],
        kind=[
            _special_of(i) if k == "special" else k
            for i, k in zip(ids.tolist(), kinds, strict=True)
        ],
        num_tag=num_tag[numeric_order],
        num_time=num_time[numeric_order],
        num_value=num_value[numeric_order],
        num_null=num_null[numeric_order],
        str_tag=str_tag[string_order],
        str_time=str_time[string_order],
        str_value=[str_value[i] for i in string_order],
    )


def _analog_rows(
    plant: _Plant, tag_ids: np.ndarray, per_tag: float, begin_us: int, length_us: int
) -> _Rows:
    """Noisy sine waves (per-tag level, amplitude and period) at random instants of
    [begin_us, begin_us + length_us)."""
    tag, time = _random_times(plant.rng, tag_ids, per_tag, begin_us, length_us)
    level = plant.per_tag(0, 500, tag)
    amplitude = plant.per_tag(1, 50, tag)
    period_us = plant.per_tag(2, 30, tag) * US_PER_HOUR
    wave = np.sin(2 * np.pi * (time - plant.start_us) / period_us)
    noise = plant.rng.normal(0, amplitude / 20)
    return _Rows(tag, time, np.round(level + amplitude * wave + noise, 3))


def _midnight_rows(plant: _Plant, tag_ids: np.ndarray) -> _Rows:
    """A row exactly at midnight on every day for each of `tag_ids`."""
    tag = np.repeat(tag_ids, plant.days)
    midnights = np.arange(plant.days, dtype=np.int64) * US_PER_DAY
    time = plant.start_us + np.tile(midnights, len(tag_ids))
    return _Rows(tag, time, np.round(plant.rng.uniform(0, 100, size=len(tag)), 2))


def _hours(plant: _Plant) -> np.ndarray:
    """Every hour of the range (midnights included), µs from its start."""
    return np.arange(plant.days * 24, dtype=np.int64) * US_PER_HOUR


def _setpoint_rows(plant: _Plant, tag_ids: np.ndarray) -> _Rows:
    """Setpoints: logged every hour on the hour, changing rarely (5 up at each random change
    of the tag, from a per-tag starting level)."""
    hours = _hours(plant)
    tag = np.repeat(tag_ids, len(hours))
    time = plant.start_us + np.tile(hours, len(tag_ids))
    change_tag, change_time = _random_times(
        plant.rng, tag_ids, plant.days / 2, plant.start_us, plant.span_us
    )

    # One sortable key per (tag, time) so a single searchsorted counts each row's earlier changes.
    def key(tags: np.ndarray, times: np.ndarray) -> np.ndarray:
        return tags.astype(np.int64) * (4 * plant.span_us) + (times - plant.start_us)

    changes_before = np.searchsorted(key(change_tag, change_time), key(tag, time), side="right")
    changes = changes_before - np.searchsorted(change_tag, tag, side="left")
    start_level = plant.rng.choice([10.0, 20.0, 50.0, 75.0], size=plant.tag_count + 1)[tag]
    return _Rows(tag, time, start_level + 5.0 * changes)


def _boolean_rows(plant: _Plant, tag_ids: np.ndarray) -> _Rows:
    """0/1 alternating at random instants, from a random initial state per tag."""
    tag, time = _random_times(plant.rng, tag_ids, plant.mean_rows(4), plant.start_us, plant.span_us)
    initial = plant.integer_per_tag(0, 2, tag)
    return _Rows(tag, time, ((initial + _grouped_rank(tag)) % 2).astype(np.float64))


def _counter_rows(plant: _Plant, tag_ids: np.ndarray) -> _Rows:
    """Counters: grow at a per-tag rate and reset to zero every few hours."""
    tag, time = _random_times(plant.rng, tag_ids, plant.mean_rows(2), plant.start_us, plant.span_us)
    reset_every_us = plant.integer_per_tag(6, 30, tag) * US_PER_HOUR
    phase_us = plant.integer_per_tag(0, US_PER_DAY, tag)
    per_s = plant.per_tag(0.1, 5, tag)
    since_reset_us = (time - plant.start_us + phase_us) % reset_every_us
    return _Rows(tag, time, np.floor(since_reset_us / US_PER_S * per_s))


def _state_rows(plant: _Plant, tag_ids: np.ndarray) -> _Rows:
    """State tags: strings, repeats allowed (equal consecutive values collapse into one run),
    two of them NULL."""
    per_tag = max(2.0, plant.rows_per_tag_day / 8) * plant.days
    tag, time = _random_times(plant.rng, tag_ids, per_tag, plant.start_us, plant.span_us)
    picks = plant.rng.choice(3, size=len(tag), p=[0.4, 0.5, 0.1])
    states: list[str | None] = [STATES[i] for i in picks]
    for i in plant.rng.choice(len(tag), size=min(2, len(tag)), replace=False):
        states[i] = None
    return _Rows(tag, time, states)


def _special(name: str) -> np.ndarray:
    return np.array([SPECIAL_TAGS[name]], np.int32)


def _analog_until_death(
    plant: _Plant, lifetimes: _Lifetimes, tag: np.ndarray, death_us: int, per_tag: float
) -> _Rows:
    """Analog rows of `tag` from the range start to its death at `death_us`."""
    lifetimes.dies(tag, death_us)
    return _analog_rows(plant, tag, per_tag, plant.start_us, death_us - plant.start_us)


def _dies_rows(plant: _Plant, lifetimes: _Lifetimes) -> list[_Rows]:
    """`dies`: analog rows until its death mid-range, and a last row exactly at death_at."""
    dies = _special("dies")
    death_us = plant.start_us + plant.span_us // 2 + 123_457
    before = _analog_until_death(plant, lifetimes, dies, death_us, plant.mean_rows(2))
    return [before, _Rows(dies, np.array([death_us], np.int64), np.array([99.5]))]


def _reborn_rows(plant: _Plant, lifetimes: _Lifetimes) -> list[_Rows]:
    """`reborn`: analog rows until its death, silence, then rows again to the range end."""
    reborn = _special("reborn")
    death_us = plant.start_us + plant.span_us // 3 + 7_777
    before = _analog_until_death(plant, lifetimes, reborn, death_us, plant.mean_rows(3))
    back_us = death_us + plant.span_us // 6
    after = _analog_rows(plant, reborn, plant.mean_rows(3), back_us, plant.end_us - back_us)
    return [before, after]


def _born_rows(plant: _Plant, lifetimes: _Lifetimes) -> _Rows:
    """`born`: analog rows from two thirds into the range; birth_at is its first row."""
    born = _special("born")
    born_from_us = plant.start_us + 2 * plant.span_us // 3 + 31_415
    per_tag = plant.mean_rows(3) + 1
    rows = _analog_rows(plant, born, per_tag, born_from_us, plant.end_us - born_from_us)
    lifetimes.birth_us[born] = rows.time.min() if len(rows.time) else born_from_us
    return rows


def _mixed_rows(plant: _Plant) -> tuple[_Rows, _Rows]:
    """`mixed`: analog rows, and string rows (CAL/ERR) of which one shares an instant with a
    number (the string row wins on resolution)."""
    mixed = _special("mixed")
    numbers = _analog_rows(plant, mixed, plant.mean_rows(2), plant.start_us, plant.span_us)
    tag, time = _random_times(plant.rng, mixed, 2.0 * plant.days + 1, plant.start_us, plant.span_us)
    values: list[str | None] = [MIXED_STRINGS[i % 2] for i in range(len(tag))]
    shared_us = numbers.time[len(numbers.time) // 2] if len(numbers.time) else plant.start_us
    strings = _Rows(np.r_[tag, mixed], np.r_[time, shared_us], [*values, "CAL"])
    return numbers, strings


def _constant_rows(plant: _Plant) -> _Rows:
    """`constant`: a setpoint logged hourly that never changes."""
    hours = _hours(plant)
    tag = np.repeat(_special("constant"), len(hours))
    return _Rows(tag, plant.start_us + hours, np.full(len(hours), 42.0))


def _numeric_columns(
    plant: _Plant, parts: list[_Rows], analog_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The numeric rows as (tag, time, value, is_null) columns, with what a real source holds
    too: a few NaN and NULL values among analog rows, then duplicate instants (half repeat the
    row exactly, half carry another value, NaN or NULL)."""
    tag = np.concatenate([p.tag for p in parts]).astype(np.int32)
    time = np.concatenate([p.time for p in parts]).astype(np.int64)
    value = np.concatenate([p.value for p in parts]).astype(np.float64)
    is_null = np.zeros(len(tag), bool)

    analog_rows = np.flatnonzero(np.isin(tag, analog_ids))
    bad_count = max(2, len(analog_rows) // 1000)
    picked = plant.rng.choice(analog_rows, size=2 * bad_count, replace=False)
    value[picked[:bad_count]] = np.nan
    is_null[picked[bad_count:]] = True

    duplicate_count = max(8, len(tag) // 500)
    duplicated = plant.rng.choice(analog_rows, size=duplicate_count)
    duplicate_value = value[duplicated].copy()
    duplicate_null = is_null[duplicated].copy()
    nth = np.arange(duplicate_count)
    duplicate_value[nth % 2 == 1] += 1.0
    duplicate_value[nth % 6 == 3] = np.nan
    duplicate_null[nth % 6 == 5] = True
    tag = np.r_[tag, tag[duplicated]]
    time = np.r_[time, time[duplicated]]
    value = np.r_[value, duplicate_value]
    is_null = np.r_[is_null, duplicate_null]
    value[is_null] = 0.0  # keep NULL rows' payload canonical for the checksum
    return tag, time, value, is_null


def _string_columns(
    plant: _Plant, parts: list[_Rows]
) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """The string rows as (tag, time, value) columns, four of them repeated at their instant with
    another state (the greatest string wins on resolution)."""
    tag = np.concatenate([p.tag for p in parts]).astype(np.int32)
    time = np.concatenate([p.time for p in parts]).astype(np.int64)
    value = [v for p in parts for v in p.value]
    duplicated = plant.rng.choice(len(tag), size=min(4, len(tag)), replace=False)
    tag = np.r_[tag, tag[duplicated]]
    time = np.r_[time, time[duplicated]]
    value += ["RUNNING" if value[i] == "FAULT" else "FAULT" for i in duplicated]
    return tag, time, value


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
