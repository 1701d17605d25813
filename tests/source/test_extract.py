"""The source reader against a real PostgreSQL: day rows and carry-in equal brute-force
reads, tenant names and roles are safe, and the synthetic plant is deterministic."""

from __future__ import annotations

import math
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import conninfo, sql

from tagflow.demo.synthetic_plant import (
    SPECIAL_TAGS,
    STATES,
    PlantSummary,
    generate_plant,
    plant_rows,
)
from tagflow.errors import InvalidName, InvalidTimeRange, SourceUnavailable, UnknownTenant
from tagflow.schemas.arrow import RAW_CARRY_IN, RAW_ROWS, TAGS
from tagflow.schemas.source_ddl import bind_variables, create_tenant, split_statements
from tagflow.source import extract
from tagflow.source.connection import connect, libpq_url, source_conninfo, source_errors
from tagflow.source.extract import read_carry_in, read_tags, stream_day_rows
from tagflow.source.tenants import list_tenants, require_tenant
from tests.conftest import (
    SMALL_PLANT_START,
    CreatedTenant,
    copy_rows,
    drop_tenant,
    unique_tenant_name,
)

NaN = float("nan")


def ts(day: int, hour: int = 0, minute: int = 0, us: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC) + timedelta(microseconds=us)


# ---------------------------------------------------------------- loading hand-built tenants


@dataclass
class Rows:
    """Hand-written history of one tenant: tags (id, name, death_at) and rows."""

    tags: list[tuple[int, str, datetime | None]]
    numeric: list[tuple[int, datetime, float | None]]
    strings: list[tuple[int, datetime, str | None]]


def load(conn: psycopg.Connection, tenant: str, rows: Rows) -> None:
    """COPY the rows in a shuffled order: the source guarantees no physical order."""
    numeric, strings = list(rows.numeric), list(rows.strings)
    random.Random(5).shuffle(numeric)
    random.Random(6).shuffle(strings)
    tags = [(tag_id, name, ts(1), death) for tag_id, name, death in rows.tags]
    copy_rows(conn, tenant, tags, numeric, strings)


# ------------------------------------------------------------------------ brute-force oracle


def all_rows(conn: psycopg.Connection, tenant: str) -> list[tuple]:
    """Every row of both tables, no WHERE clause: the oracle filters in Python."""
    s = sql.Identifier(tenant)
    num = conn.execute(
        sql.SQL("SELECT tag_name_id, tag_value_changed_at, tag_value FROM {}.tag_data").format(s)
    ).fetchall()
    txt = conn.execute(
        sql.SQL("SELECT tag_name_id, tag_value_changed_at, tag_value FROM {}.tag_data_str").format(
            s
        )
    ).fetchall()
    return [(t, when, v, None, False) for t, when, v in num] + [
        (t, when, None, v, True) for t, when, v in txt
    ]


def canonical(row: Iterable) -> tuple:
    """Rows as comparable tuples: NaN as a marker (NaN != NaN), times in one tzinfo."""
    return tuple(
        "NaN"
        if isinstance(v, float) and math.isnan(v)
        else v.astimezone(UTC)
        if isinstance(v, datetime)
        else v
        for v in row
    )


def multiset(rows: Iterable[tuple]) -> list[tuple]:
    """Rows in a canonical order; repr sorts rows mixing None, floats and "NaN"."""
    return sorted(rows, key=repr)


def extracted_rows(batches: Iterable[pa.RecordBatch]) -> list[tuple]:
    table = pa.Table.from_batches(list(batches), schema=RAW_ROWS)
    assert table.schema == RAW_ROWS
    return multiset(canonical(r.values()) for r in table.to_pylist())


def brute_day_rows(rows: list[tuple], d0: datetime, d1: datetime) -> list[tuple]:
    return multiset(canonical(r) for r in rows if d0 <= r[1] < d1)


def _numeric_key(value: float | None) -> tuple:
    # PostgreSQL order: NULL lowest, numbers, NaN above +inf.
    if value is None:
        return (0,)
    return (2,) if math.isnan(value) else (1, value)


def resolve(instant_rows: list[tuple]) -> tuple[bool, float | None, str | None]:
    """SPEC duplicate rule: a string row wins (greatest string, NULL lowest), else the
    greatest number in PostgreSQL's order."""
    strings = [r for r in instant_rows if r[4]]
    if strings:
        best = max(strings, key=lambda r: (r[3] is not None, r[3] or ""))
        return True, None, best[3]
    best = max(instant_rows, key=lambda r: _numeric_key(r[2]))
    return False, best[2], None


def same_value(a: tuple, b: tuple) -> bool:
    """SPEC equality: NULLs of either table equal, number vs string differ, NaN == NaN."""
    (_, ad, as_), (_, bd, bs) = a, b
    if as_ is not None or bs is not None:
        return as_ == bs
    if ad is None or bd is None:
        return ad is None and bd is None
    return ad == bd or (math.isnan(ad) and math.isnan(bd))


def brute_carry_in(
    rows: list[tuple], deaths: dict[int, datetime | None], d0: datetime
) -> list[tuple]:
    by_tag: dict[int, dict[datetime, list[tuple]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row[0] in deaths and row[1] < d0:
            by_tag[row[0]][row[1]].append(row)
    out = []
    for tag, instants in sorted(by_tag.items()):
        times = sorted(instants)
        resolved = {t: resolve(instants[t]) for t in times}
        last = times[-1]
        value = resolved[last]
        death = deaths[tag]
        eligible = [t for t in times if death is None or not death < last or t > death]
        begin = last
        for t in reversed(eligible):
            if not same_value(resolved[t], value):
                break
            begin = t
        out.append(canonical((tag, last, value[1], value[2], value[0], begin)))
    return out


def carry_in_rows(table: pa.Table) -> list[tuple]:
    assert table.schema == RAW_CARRY_IN
    return [canonical(r.values()) for r in table.to_pylist()]


def tag_deaths(conn: psycopg.Connection, tenant: str) -> dict[int, datetime | None]:
    query = sql.SQL("SELECT id, death_at FROM {}.tag_names").format(sql.Identifier(tenant))
    return dict(conn.execute(query).fetchall())


# ----------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def source(pg_url: str) -> Iterable[psycopg.Connection]:
    with connect(pg_url) as conn:
        yield conn


@pytest.fixture
def awkward(
    make_tenant: Callable[[], CreatedTenant], admin_conn: psycopg.Connection
) -> CreatedTenant:
    """A tenant whose tags each exercise one carry-in rule; the day under test is 03-10."""
    tenant = make_tenant()
    rows = Rows(
        tags=[
            (1, "dup_numeric", None),
            (2, "dup_string_wins", None),
            (3, "long_run", None),
            (4, "reborn", ts(8, 12)),
            (5, "dead", ts(9, 6)),
            (6, "nan_run", None),
            (7, "null_across_tables", None),
            (8, "number_vs_string", None),
            (9, "break_resolves_equal", None),
            (10, "no_rows", None),
            (11, "only_after_d0", None),
            (12, "row_at_death", ts(9, 3)),
            (13, "negative_zero", None),
            (14, "strings_dup_null", None),
            (15, "sparse_in_day", None),
            (16, "unicode Ω ☃", None),
            (17, "string_after_null_number", None),
            (18, "number_after_null_string", None),
        ],
        numeric=[
            # 1: duplicates at the carry-in instant: NaN beats every number, NULL loses.
            (1, ts(9, 20), 1.0),
            (1, ts(9, 23), 3.0),
            (1, ts(9, 23), NaN),
            (1, ts(9, 23), None),
            (1, ts(9, 23), float("inf")),
            # 2: a string row at the instant wins over a greater number.
            (2, ts(9, 22), 1e9),
            # 3: the value 7 since 03-04 10:00, logged again and again up to 03-09.
            (3, ts(2), 5.0),
            (3, ts(4, 10), 7.0),
            (3, ts(5, 10), 7.0),
            (3, ts(7, 10), 7.0),
            (3, ts(9, 23, 59), 7.0),
            (3, ts(10, 1), 8.0),
            # 4: 7 before death, death 03-08 12:00, reborn with 7 again on 03-08 18:00.
            (4, ts(8, 1), 7.0),
            (4, ts(8, 12), 7.0),
            (4, ts(8, 18), 7.0),
            (4, ts(9, 18), 7.0),
            # 5: dead on 03-09 06:00, no later rows.
            (5, ts(9, 1), 2.0),
            (5, ts(9, 2), 3.0),
            # 6: NaN equals NaN.
            (6, ts(9, 1), 1.0),
            (6, ts(9, 2), NaN),
            (6, ts(9, 3), NaN),
            # 7: NULL numeric and NULL string are the same value.
            (7, ts(9, 1), 4.0),
            (7, ts(9, 2), None),
            # 8: the number 1 and the string "1" differ.
            (8, ts(9, 2), 1.0),
            # 9: at 03-09 05:00 a 3 loses to a 7 in resolution, so the run of 7 goes on.
            (9, ts(9, 1), 2.0),
            (9, ts(9, 4), 7.0),
            (9, ts(9, 5), 7.0),
            (9, ts(9, 5), 3.0),
            (9, ts(9, 6), 7.0),
            # 11: first row on the day itself: no carry-in.
            (11, ts(10, 3), 1.0),
            # 12: a row exactly at death_at holds for zero time.
            (12, ts(9, 1), 5.0),
            (12, ts(9, 3), 5.0),
            # 13: -0.0 equals 0.0.
            (13, ts(9, 1), 1.0),
            (13, ts(9, 2), 0.0),
            (13, ts(9, 3), -0.0),
            # 15: rows on 03-10 with the day boundaries, and a duplicate pair in the day.
            (15, ts(10), 1.0),
            (15, ts(10, 12), 2.0),
            (15, ts(10, 12), 2.0),
            (15, ts(11), 3.0),
            (16, ts(9, 12), -1.5),
            # 17/18: a NULL of the other table breaks a run (NULL is not the string or number).
            (17, ts(9, 2), None),
            (18, ts(9, 1), 5.0),
            (18, ts(9, 3), 5.0),
            # an orphan row: its tag is not in tag_names (the day rows keep it, unresolved).
            (99, ts(10, 5), 1.0),
        ],
        strings=[
            (2, ts(9, 22), "B"),
            (2, ts(9, 21), "A"),
            (7, ts(9, 3), None),
            (8, ts(9, 1), "1"),
            (8, ts(9, 3), "1"),
            (14, ts(9, 1), "x"),
            (14, ts(9, 2), None),
            (14, ts(9, 2), "b"),
            (14, ts(9, 2), "a"),
            (14, ts(9, 2), "é"),
            (14, ts(9, 3), "é"),
            (15, ts(10, 6), "S"),
            (17, ts(9, 1), "x"),
            (17, ts(9, 3), "x"),
            (18, ts(9, 2), None),
        ],
    )
    load(admin_conn, tenant.name, rows)
    return tenant


# ---------------------------------------------------------------------------- day row extract


def test_day_rows_equal_brute_force_for_every_plant_day(
    small_plant: PlantSummary, source: psycopg.Connection, pg_url: str
) -> None:
    for tenant in small_plant.tenants:
        rows = all_rows(source, tenant.tenant)
        for day in range(-1, 4):
            d0 = small_plant.start + timedelta(days=day)
            d1 = d0 + timedelta(days=1)
            expected = brute_day_rows(rows, d0, d1)
            assert extracted_rows(stream_day_rows(pg_url, tenant.tenant, d0, d1)) == expected
            if day in (0, 2):  # the psycopg-connection path returns the same rows
                assert extracted_rows(stream_day_rows(source, tenant.tenant, d0, d1)) == expected


def test_day_rows_include_midnight_at_start_and_exclude_it_at_end(
    awkward: CreatedTenant, source: psycopg.Connection, pg_url: str
) -> None:
    got = extracted_rows(stream_day_rows(pg_url, awkward.name, ts(10), ts(11)))
    tag15 = [r for r in got if r[0] == 15]
    assert sorted((r[1], r[2], r[3], r[4]) for r in tag15) == [
        (ts(10), 1.0, None, False),
        (ts(10, 6), None, "S", True),
        (ts(10, 12), 2.0, None, False),
        (ts(10, 12), 2.0, None, False),
    ]
    assert (99, ts(10, 5), 1.0, None, False) in got  # orphans are left to the transforms
    assert got == brute_day_rows(all_rows(source, awkward.name), ts(10), ts(11))


def test_day_rows_of_listed_tag_ids_only(small_plant: PlantSummary, pg_url: str) -> None:
    tenant = small_plant.tenants[0].tenant
    d0 = small_plant.start + timedelta(days=1)
    whole = extracted_rows(stream_day_rows(pg_url, tenant, d0, d0 + timedelta(days=1)))
    listed = [7, 3, 12, 5]  # any order, with gaps
    some = extracted_rows(
        stream_day_rows(pg_url, tenant, d0, d0 + timedelta(days=1), tag_ids=listed)
    )
    assert some and some == [r for r in whole if r[0] in listed]
    none = stream_day_rows(pg_url, tenant, d0, d0 + timedelta(days=1), tag_ids=[])
    assert extracted_rows(none) == []


def test_day_rows_stream_in_bounded_batches(small_plant: PlantSummary, pg_url: str) -> None:
    tenant = small_plant.tenants[0]
    batches = list(
        stream_day_rows(
            pg_url, tenant.tenant, small_plant.start, small_plant.end, batch_bytes=16 * 1024
        )
    )
    assert len(batches) > 3
    assert all(b.schema == RAW_ROWS for b in batches)
    assert sum(b.num_rows for b in batches) == tenant.numeric_rows + tenant.string_rows
    with connect(pg_url) as conn:
        via_psycopg = list(
            stream_day_rows(
                conn, tenant.tenant, small_plant.start, small_plant.end, batch_bytes=16 * 1024
            )
        )
    assert len(via_psycopg) > 3
    assert max(b.num_rows for b in via_psycopg) * 39 < 2 * 16 * 1024
    assert extracted_rows(via_psycopg) == extracted_rows(batches)


def test_day_without_rows_yields_no_batches(awkward: CreatedTenant, pg_url: str) -> None:
    assert list(stream_day_rows(pg_url, awkward.name, ts(20), ts(21))) == []


def test_day_bounds_must_be_aware_and_ordered(awkward: CreatedTenant, pg_url: str) -> None:
    with pytest.raises(InvalidTimeRange):
        stream_day_rows(pg_url, awkward.name, datetime(2026, 3, 10), datetime(2026, 3, 11))
    with pytest.raises(InvalidTimeRange):
        stream_day_rows(pg_url, awkward.name, ts(11), ts(10))


# --------------------------------------------------------------------------------- carry-in


def test_carry_in_equals_brute_force_for_every_plant_day(
    small_plant: PlantSummary, source: psycopg.Connection
) -> None:
    for tenant in small_plant.tenants:
        rows = all_rows(source, tenant.tenant)
        deaths = tag_deaths(source, tenant.tenant)
        for day in range(0, 5):
            d0 = small_plant.start + timedelta(days=day)
            got = carry_in_rows(read_carry_in(source, tenant.tenant, d0))
            assert got == brute_carry_in(rows, deaths, d0), (tenant.tenant, d0)
        assert read_carry_in(source, tenant.tenant, small_plant.start).num_rows == 0


def test_carry_in_equals_brute_force_on_awkward_history(
    awkward: CreatedTenant, source: psycopg.Connection
) -> None:
    rows = all_rows(source, awkward.name)
    deaths = tag_deaths(source, awkward.name)
    for d0 in (ts(9), ts(9, 3), ts(9, 5, us=1), ts(9, 23), ts(10), ts(11), ts(12)):
        got = carry_in_rows(read_carry_in(source, awkward.name, d0))
        assert got == brute_carry_in(rows, deaths, d0), d0


def test_carry_in_rules_by_example(awkward: CreatedTenant, source: psycopg.Connection) -> None:
    table = read_carry_in(source, awkward.name, ts(10))
    got = {r["tag_id"]: r for r in table.to_pylist()}
    # Tags without rows before the day have no carry-in; sorted by tag id.
    assert sorted(got) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14, 16, 17, 18]
    assert table.column("tag_id").to_pylist() == sorted(got)

    def value(tag: int) -> tuple:
        r = got[tag]
        return canonical((r["time"], r["value_double"], r["value_string"], r["is_string"]))

    assert value(1) == (ts(9, 23), "NaN", None, False)
    assert value(2) == (ts(9, 22), None, "B", True)
    assert value(14) == (ts(9, 3), None, "é", True)
    assert got[1]["run_begin_at"] == ts(9, 23)
    assert got[3]["run_begin_at"] == ts(4, 10)  # a run of 7 over five days
    assert got[4]["run_begin_at"] == ts(8, 18)  # reborn: first row after death_at
    assert got[5]["run_begin_at"] == ts(9, 2)  # dead tags keep their row; transforms drop it
    assert got[6]["run_begin_at"] == ts(9, 2)  # NaN == NaN
    assert got[7]["run_begin_at"] == ts(9, 2)  # NULL numeric == NULL string
    assert got[8]["run_begin_at"] == ts(9, 3)  # 1 != "1"
    assert got[9]["run_begin_at"] == ts(9, 4)  # 3 at 05:00 lost resolution to 7
    assert got[12]["run_begin_at"] == ts(9, 1)  # row at death_at: death_at not < carry-in time
    assert got[13]["run_begin_at"] == ts(9, 2)  # -0.0 == 0.0
    assert got[14]["run_begin_at"] == ts(9, 2)  # "é" won at 03-09 02:00 and holds on
    assert got[17]["run_begin_at"] == ts(9, 3)  # NULL number between two "x"
    assert got[18]["run_begin_at"] == ts(9, 3)  # NULL string between two 5


def test_carry_in_before_death_ignores_the_death(
    awkward: CreatedTenant, source: psycopg.Connection
) -> None:
    got = {r["tag_id"]: r for r in read_carry_in(source, awkward.name, ts(8, 12)).to_pylist()}
    assert got[4]["time"] == ts(8, 1)
    assert got[4]["run_begin_at"] == ts(8, 1)


def test_carry_in_probes_indexes_per_tag(
    small_plant: PlantSummary, source: psycopg.Connection, admin_conn: psycopg.Connection
) -> None:
    """The carry-in plan reaches tag_data only through index scans. (tag_data_str of the
    small plant fits in a page or two, where a sequential scan is rightly cheaper.)"""
    tenant = small_plant.tenants[0].tenant
    s = sql.Identifier(tenant)
    query = sql.SQL(extract._CARRY_IN).format(
        s=s,
        d0=sql.Literal(small_plant.start + timedelta(days=2)),
        resolved_at_ci=sql.SQL(extract._RESOLVED_AT).format(s=s, at=sql.SQL("ci.t")),
        resolved_at_cand=sql.SQL(extract._RESOLVED_AT).format(s=s, at=sql.SQL("cand.t")),
    )
    plan = "\n".join(r[0] for r in source.execute(sql.SQL("EXPLAIN {}").format(query)))
    assert re.search(r"Seq Scan on tag_data\b(?!_str)", plan) is None, plan
    assert "Index Only Scan using tag_data_tag_time" in plan


# ------------------------------------------------------------------------------------ tags


def test_read_tags_reports_value_kind_from_history(
    awkward: CreatedTenant, source: psycopg.Connection
) -> None:
    tags = read_tags(source, awkward.name)
    assert tags.schema == TAGS
    assert tags.column("tag_id").to_pylist() == list(range(1, 19))
    by_name = {t["tag_name"]: t for t in tags.to_pylist()}
    kind = {name: t["value_kind"] for name, t in by_name.items()}
    assert kind["dup_numeric"] == "numeric"
    assert kind["dup_string_wins"] == "mixed"
    assert kind["no_rows"] is None
    assert kind["unicode Ω ☃"] == "numeric"
    assert by_name["reborn"]["death_at"] == ts(8, 12)
    assert by_name["dup_numeric"]["death_at"] is None


def test_read_tags_on_the_plant(small_plant: PlantSummary, source: psycopg.Connection) -> None:
    tags = read_tags(source, small_plant.tenants[0].tenant).to_pylist()
    by_id = {t["tag_id"]: t for t in tags}
    assert by_id[SPECIAL_TAGS["empty"]]["value_kind"] is None
    assert by_id[SPECIAL_TAGS["mixed"]]["value_kind"] == "mixed"
    assert {t["value_kind"] for t in tags} == {None, "numeric", "string", "mixed"}


# --------------------------------------------------------------------------- tenants, names

HOSTILE_NAMES = [
    "x; drop schema acme",
    "../etc",
    "tenant\u00e9",
    "",
    "a" * 64,
    'x"; DROP TABLE tag_data; --',
    "1abc",
    None,
]


def catalog_snapshot(conn: psycopg.Connection) -> tuple:
    schemas = conn.execute("SELECT nspname FROM pg_namespace ORDER BY 1").fetchall()
    roles = conn.execute("SELECT rolname FROM pg_roles ORDER BY 1").fetchall()
    tables = conn.execute(
        "SELECT relnamespace::regnamespace::text, relname FROM pg_class ORDER BY 1, 2"
    ).fetchall()
    return schemas, roles, tables


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_tenant_names_are_rejected_and_touch_nothing(
    name: object,
    awkward: CreatedTenant,
    source: psycopg.Connection,
    admin_conn: psycopg.Connection,
    pg_url: str,
) -> None:
    before = catalog_snapshot(admin_conn)
    calls = [
        lambda: require_tenant(source, name),
        lambda: read_tags(source, name),
        lambda: read_carry_in(source, name, ts(10)),
        lambda: stream_day_rows(pg_url, name, ts(10), ts(11)),
        lambda: create_tenant(admin_conn, name, "key"),
    ]
    for call in calls:
        with pytest.raises(InvalidName, match="invalid tenant name"):
            call()
    assert catalog_snapshot(admin_conn) == before
    assert read_tags(source, awkward.name).num_rows == 18


def test_unknown_tenants_are_reported_as_unknown(
    source: psycopg.Connection, admin_conn: psycopg.Connection, pg_url: str
) -> None:
    missing = unique_tenant_name("missing")
    for call in (
        lambda: require_tenant(source, missing),
        lambda: read_tags(source, missing),
        lambda: read_carry_in(source, missing, ts(10)),
        lambda: stream_day_rows(pg_url, missing, ts(10), ts(11)),
    ):
        with pytest.raises(UnknownTenant, match="unknown tenant"):
            call()
    # A schema with only some of the tables is not a tenant either.
    partial = unique_tenant_name("partial")
    admin_conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(partial)))
    admin_conn.execute(
        sql.SQL("CREATE TABLE {}.tag_names (id int)").format(sql.Identifier(partial))
    )
    try:
        with pytest.raises(UnknownTenant):
            require_tenant(source, partial)
        assert partial not in list_tenants(source)
    finally:
        admin_conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(partial)))


def test_list_tenants_finds_every_tenant(
    small_plant: PlantSummary, awkward: CreatedTenant, source: psycopg.Connection
) -> None:
    found = list_tenants(source)
    assert found == sorted(found)
    assert {t.tenant for t in small_plant.tenants} | {awkward.name} <= set(found)


def test_create_tenant_is_idempotent_and_refuses_reserved_names(
    make_tenant: Callable[[], CreatedTenant], admin_conn: psycopg.Connection
) -> None:
    tenant = make_tenant()
    create_tenant(admin_conn, tenant.name, tenant.api_key)
    for reserved in ("postgres", "public", "pg_monitor", "information_schema"):
        with pytest.raises(InvalidName):
            create_tenant(admin_conn, reserved, "key")


def test_ddl_script_translation_keeps_casts_and_quotes_variables() -> None:
    statements = split_statements(
        "-- note; not a statement\nSELECT ':x;'::text, :'v'; SELECT 1 \\gexec\n"
        'CREATE SCHEMA :"v";'
    )
    assert [s.gexec for s in statements] == [False, True, False]
    composed = bind_variables(statements[0].text, {"v": "a'b"})
    assert composed.as_string(None) == "SELECT ':x;'::text, 'a''b'"
    assert bind_variables(statements[2].text, {"v": 'we"ird'}).as_string(None) == (
        'CREATE SCHEMA "we""ird"'
    )


# ------------------------------------------------------------------------------ tenant role


def role_conninfo(pg_url: str, tenant: CreatedTenant) -> str:
    return conninfo.make_conninfo(libpq_url(pg_url), user=tenant.name, password=tenant.api_key)


def test_tenant_role_reads_its_own_schema_only(
    make_tenant: Callable[[], CreatedTenant],
    admin_conn: psycopg.Connection,
    pg_url: str,
) -> None:
    own, other = make_tenant(), make_tenant()
    for tenant in (own, other):
        load(admin_conn, tenant.name, Rows([(1, "a", None)], [(1, ts(9), 1.0)], []))
    # The embedded server trusts local sockets, so this proves privileges, not the password;
    # with TAGFLOW_TEST_DSN pointing at a password-checking server it proves both.
    with connect(role_conninfo(pg_url, own)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (own.name,)
        assert list_tenants(conn) == [own.name]
        assert read_tags(conn, own.name).num_rows == 1
        assert read_carry_in(conn, own.name, ts(10)).num_rows == 1
        with pytest.raises(UnknownTenant):
            read_tags(conn, other.name)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("SELECT * FROM {}.tag_data").format(sql.Identifier(other.name)))
    with psycopg.connect(role_conninfo(pg_url, own), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                sql.SQL("INSERT INTO {}.tag_data VALUES (1, now(), 1)").format(
                    sql.Identifier(own.name)
                )
            )
    superuser = admin_conn.execute(
        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    if superuser and superuser[0]:  # pg_authid is for superusers only
        password = admin_conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (own.name,)
        ).fetchone()
        assert password is not None and password[0].startswith("SCRAM-SHA-256$")
        assert own.api_key not in password[0]


# ------------------------------------------------------------------------------- connections


def test_sqlalchemy_urls_become_libpq_urls() -> None:
    assert libpq_url("postgresql+psycopg://u:p@h:5/db") == "postgresql://u:p@h:5/db"
    assert libpq_url("postgres+asyncpg://h/db") == "postgresql://h/db"
    assert libpq_url("postgresql://h/db?sslmode=require") == "postgresql://h/db?sslmode=require"
    assert libpq_url("host=/tmp dbname=x") == "host=/tmp dbname=x"
    info = conninfo.conninfo_to_dict(
        source_conninfo(
            "postgresql+psycopg://u@h/db?options=-c%20search_path%3Dx", statement_timeout_s=2
        )
    )
    assert info["options"].startswith("-c search_path=x ")  # the URL's options are kept
    assert "default_transaction_read_only=on" in info["options"]
    assert "statement_timeout=2000" in info["options"]
    assert info["application_name"] == "tagflow" and int(info["connect_timeout"]) > 0


def test_source_sessions_are_read_only(awkward: CreatedTenant, pg_url: str) -> None:
    with connect(pg_url) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute(sql.SQL("DELETE FROM {}.tag_data").format(sql.Identifier(awkward.name)))
        assert conn.execute("SHOW TimeZone").fetchone() == ("UTC",)


def test_unreachable_source_raises_source_unavailable_without_secrets() -> None:
    url = "postgresql+psycopg://alice:s3cretpw@/db?host=/nonexistent/sockets"
    with pytest.raises(SourceUnavailable) as err:
        connect(url, attempts=2, backoff_s=0.01)
    message = str(err.value)
    assert "attempts" in message
    for secret in ("s3cretpw", "alice", "/nonexistent", "sockets"):
        assert secret not in message
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_statement_timeout_becomes_source_unavailable(pg_url: str) -> None:
    with connect(pg_url, statement_timeout_s=0.05) as conn:
        with pytest.raises(SourceUnavailable, match="statement timeout") as err:
            with source_errors("reading"):
                conn.execute("SELECT pg_sleep(1)")
        assert "pg_sleep" not in str(err.value)


# -------------------------------------------------------------------------------- generator


def db_checksum(conn: psycopg.Connection, tenant: str) -> tuple:
    s = sql.Identifier(tenant)
    queries = [
        "SELECT count(*), md5(string_agg(concat_ws(',', tag_name_id, tag_value_changed_at,"
        " tag_value), ';' ORDER BY tag_name_id, tag_value_changed_at, tag_value)) FROM {}.tag_data",
        "SELECT count(*), md5(string_agg(concat_ws(',', tag_name_id, tag_value_changed_at,"
        " tag_value), ';' ORDER BY tag_name_id, tag_value_changed_at, tag_value COLLATE \"C\"))"
        " FROM {}.tag_data_str",
        "SELECT count(*), md5(string_agg(concat_ws(',', id, normalized_name, birth_at,"
        " death_at), ';' ORDER BY id)) FROM {}.tag_names",
    ]
    return tuple(conn.execute(sql.SQL(q).format(s)).fetchone() for q in queries)


def test_generator_is_deterministic_by_seed(pg_url: str, admin_conn: psycopg.Connection) -> None:
    sizes = dict(tags=14, days=2, rows_per_tag_day=8)
    a, b, c = (unique_tenant_name("gen") for _ in range(3))
    try:
        first = generate_plant(pg_url, [a], seed=3, **sizes)
        second = generate_plant(pg_url, [b], seed=3, **sizes)
        third = generate_plant(pg_url, [c], seed=4, **sizes)
        assert first.tenants[0].checksum == second.tenants[0].checksum
        assert first.tenants[0].checksum != third.tenants[0].checksum
        assert db_checksum(admin_conn, a) == db_checksum(admin_conn, b)
        assert db_checksum(admin_conn, a) != db_checksum(admin_conn, c)
        # Rerunning replaces the rows instead of adding to them.
        again = generate_plant(pg_url, [a], seed=3, **sizes)
        assert db_checksum(admin_conn, a) == db_checksum(admin_conn, b)
        assert again.api_keys == first.api_keys
    finally:
        for name in (a, b, c):
            drop_tenant(admin_conn, name)


def test_generator_produces_every_required_feature(
    small_plant: PlantSummary, source: psycopg.Connection
) -> None:
    tenant = small_plant.tenants[0].tenant
    s = sql.Identifier(tenant)

    def one(query: str, *params: object) -> tuple:
        row = source.execute(sql.SQL(query).format(s=s), params).fetchone()
        assert row is not None
        return row

    start, end = small_plant.start, small_plant.end
    tags = {t["tag_id"]: t for t in read_tags(source, tenant).to_pylist()}
    special = SPECIAL_TAGS
    assert one("SELECT count(*) FROM {s}.tag_data WHERE tag_value = 'NaN'")[0] > 0
    assert one("SELECT count(*) FROM {s}.tag_data WHERE tag_value IS NULL")[0] > 0
    assert one("SELECT count(*) FROM {s}.tag_data_str WHERE tag_value IS NULL")[0] > 0
    dup_same, dup_diff = one(
        "SELECT count(*) FILTER (WHERE n_values = 1), count(*) FILTER (WHERE n_values > 1)"
        " FROM (SELECT count(DISTINCT coalesce(tag_value::text, 'null')) AS n_values"
        " FROM {s}.tag_data GROUP BY tag_name_id, tag_value_changed_at HAVING count(*) > 1) d"
    )
    assert dup_same > 0 and dup_diff > 0
    assert (
        one(
            "SELECT count(*) FROM (SELECT 1 FROM {s}.tag_data_str GROUP BY tag_name_id,"
            " tag_value_changed_at HAVING count(DISTINCT tag_value) > 1) d"
        )[0]
        > 0
    )
    midnights = one(
        "SELECT count(DISTINCT tag_value_changed_at) FROM {s}.tag_data"
        " WHERE tag_value_changed_at = date_trunc('day', tag_value_changed_at)"
    )[0]
    assert midnights == 3
    # Physical order is not time order.
    ordered = one(
        "SELECT bool_and(ok) FROM (SELECT tag_value_changed_at >= lag(tag_value_changed_at)"
        " OVER (ORDER BY ctid) AS ok FROM {s}.tag_data) d"
    )[0]
    assert ordered is False
    # The dying tag: death_at mid-range, its last row exactly at death_at.
    dies = tags[special["dies"]]
    assert start < dies["death_at"] < end
    assert (
        one(
            "SELECT max(tag_value_changed_at) FROM {s}.tag_data WHERE tag_name_id = %s",
            special["dies"],
        )[0]
        == dies["death_at"]
    )
    # The reborn tag has rows after its death_at.
    reborn = tags[special["reborn"]]
    assert (
        one(
            "SELECT count(*) FROM {s}.tag_data"
            " WHERE tag_name_id = %s AND tag_value_changed_at > %s",
            special["reborn"],
            reborn["death_at"],
        )[0]
        > 0
    )
    # The born tag: birth_at is its first row, two thirds into the range.
    born = tags[special["born"]]
    first_born = one(
        "SELECT min(tag_value_changed_at) FROM {s}.tag_data WHERE tag_name_id = %s",
        special["born"],
    )[0]
    assert born["birth_at"] == first_born and first_born > start + (end - start) / 2
    # Mixed tag: rows in both tables, once at the same instant; the empty tag has none.
    assert tags[special["mixed"]]["value_kind"] == "mixed"
    assert (
        one(
            "SELECT count(*) FROM {s}.tag_data d JOIN {s}.tag_data_str x USING (tag_name_id,"
            " tag_value_changed_at) WHERE tag_name_id = %s",
            special["mixed"],
        )[0]
        > 0
    )
    assert tags[special["empty"]]["value_kind"] is None
    # Kinds by name: booleans are 0/1, counters reset, states come from STATES, setpoints
    # change rarely, the constant setpoint never.
    by_kind: dict[str, list[int]] = defaultdict(list)
    for t in tags.values():
        by_kind[t["tag_name"].rsplit("/", 1)[1].split("_")[0]].append(t["tag_id"])
    booleans = one(
        "SELECT array_agg(DISTINCT tag_value) FROM {s}.tag_data WHERE tag_name_id = ANY(%s)",
        by_kind["boolean"],
    )[0]
    assert sorted(booleans) == [0.0, 1.0]
    resets = one(
        "SELECT count(*) FROM (SELECT tag_value < lag(tag_value) OVER w AS reset"
        " FROM {s}.tag_data WHERE tag_name_id = ANY(%s)"
        " WINDOW w AS (PARTITION BY tag_name_id ORDER BY tag_value_changed_at)) d WHERE reset",
        by_kind["counter"],
    )[0]
    assert resets > 0
    states = one(
        "SELECT array_agg(DISTINCT tag_value) FROM {s}.tag_data_str WHERE tag_name_id = ANY(%s)"
        " AND tag_value IS NOT NULL",
        by_kind["state"],
    )[0]
    assert set(states) == set(STATES)
    setpoint_values, setpoint_rows = one(
        "SELECT count(DISTINCT (tag_name_id, tag_value)), count(*) FROM {s}.tag_data"
        " WHERE tag_name_id = ANY(%s)",
        by_kind["setpoint"],
    )
    assert setpoint_values < setpoint_rows / 10
    assert (
        one(
            "SELECT count(DISTINCT tag_value) FROM {s}.tag_data WHERE tag_name_id = %s",
            special["constant"],
        )[0]
        == 1
    )


def test_generator_rows_match_between_runs_in_memory() -> None:
    params = dict(tags=30, days=2, start=SMALL_PLANT_START, seed=11, rows_per_tag_day=20)
    a = plant_rows(tenant_index=0, **params)
    b = plant_rows(tenant_index=0, **params)
    other_tenant = plant_rows(tenant_index=1, **params)
    assert a.checksum() == b.checksum() != other_tenant.checksum()
    assert np.array_equal(a.num_time, b.num_time)


# ------------------------------------------------------------------------ random histories

_NUMBERS = st.sampled_from([0.0, -0.0, 1.0, 2.0, NaN, float("inf"), None])
_STRINGS = st.sampled_from(["a", "b", "1", "é", None])
_ROW = st.one_of(
    st.tuples(st.just(False), st.integers(0, 7), _NUMBERS),
    st.tuples(st.just(True), st.integers(0, 7), _STRINGS),
)
_TAG = st.tuples(
    st.lists(_ROW, max_size=12), st.one_of(st.none(), st.integers(0, 15))
)  # rows, death in half hours


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(tags=st.lists(_TAG, min_size=1, max_size=3), day_hour=st.integers(0, 8))
def test_carry_in_equals_brute_force_on_random_histories(
    tags: list,
    day_hour: int,
    empty_tenant: CreatedTenant,
    admin_conn: psycopg.Connection,
    source: psycopg.Connection,
) -> None:
    tenant = empty_tenant.name
    s = sql.Identifier(tenant)
    admin_conn.execute(
        sql.SQL("TRUNCATE {}.tag_names, {}.tag_data, {}.tag_data_str").format(s, s, s)
    )
    rows = Rows([], [], [])
    for tag_id, (tag_rows, death) in enumerate(tags, start=1):
        death_at = None if death is None else ts(9) + timedelta(minutes=30 * death)
        rows.tags.append((tag_id, f"tag{tag_id}", death_at))
        for is_string, hour, value in tag_rows:
            target = rows.strings if is_string else rows.numeric
            target.append((tag_id, ts(9, hour), value))
    load(admin_conn, tenant, rows)
    d0 = ts(9, day_hour)
    got = carry_in_rows(read_carry_in(source, tenant, d0))
    assert got == brute_carry_in(all_rows(source, tenant), tag_deaths(source, tenant), d0)


@pytest.fixture
def empty_tenant(make_tenant: Callable[[], CreatedTenant]) -> CreatedTenant:
    return make_tenant()
