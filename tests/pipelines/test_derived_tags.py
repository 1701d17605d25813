"""Derived tags (DESIGN §8) through real materialisations on PostgreSQL: hand-worked values in
every dataset (computed by hand below, per case), the files still sorted by name with derived
tags among the source tags, and the late-data sensor rerunning exactly the days a redefinition
or a late row before them changes."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from psycopg import sql

from tagflow.assets.resources import SourceDatabase
from tagflow.cli.runs import materialize_days
from tagflow.io_managers import DatasetStore
from tagflow.pipelines.sensors import build_late_data_sensor
from tagflow.schemas.registry import DATASETS, DATED
from tagflow.settings import Settings
from tagflow.source.connection import connect
from tagflow.source.fingerprints import day_fingerprint
from tagflow.transforms.derived.definitions import derived_tag_id
from tests.conftest import copy_rows
from tests.pipelines.conftest import recorded_source_version
from tests.pipelines.test_materialize import check_evaluations

DAY = date(2026, 3, 2)
D0 = datetime(2026, 3, 2, tzinfo=UTC)
D1 = D0 + timedelta(days=1)


def at(hour: int, minute: int = 0, day: int = 2, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


# (id, name, death_at)
TAGS = [
    (1, "plant/temp", None),
    (2, "plant/pressure", None),
    (3, "plant/line", None),
    (4, "plant/valve", at(6)),  # dies at 06:00, reborn at 09:00
    (5, "plant/flow", None),
    (6, "plant/long", None),
]
NUMERIC = [
    (1, at(22, day=1), 290.0),
    (1, at(1), 270.0),
    (1, at(3), 300.0),
    (2, at(23, day=1), 10.0),
    (2, at(2), 20.0),
    (4, at(12, day=1), 1.0),
    (4, at(9), 1.0),
    (4, at(15), 0.0),
    (5, at(18, day=1), 5.0),
    (5, at(4), math.nan),
    (5, at(7), None),
    (5, at(10), -1.0),
    (5, at(13), 2.0),
    # Below 10, then at or above it from 02-27 08:00 (three days before the partition) with a
    # new value every day, then below again at 08:00 of the day.
    (6, at(8, day=26, month=2), 3.0),
    (6, at(8, day=27, month=2), 12.0),
    (6, at(8, day=28, month=2), 15.0),
    (6, at(8, day=1), 11.0),
    (6, at(8), 5.0),
]
STRINGS = [
    (3, at(20, day=1), "RUNNING"),
    (3, at(5), "STOPPED"),
    (3, at(12), "RUNNING"),
]

# "derived/…" sorts before every source tag, "plant/m_double" among them, "zz/…" after all.
DEFINITIONS = """
tenants:
  {tenant}:
    - name: derived/hot
      expression: '"plant/temp" > 280 and "plant/line" = ''RUNNING'''
      description: hot while the line runs
    - name: derived/margin
      expression: '"plant/temp" - "plant/pressure"'
    - name: derived/line_state
      expression: '"plant/line"'
    - name: derived/valve_open
      expression: '"plant/valve" = 1'
    - name: derived/flow_ok
      expression: '"plant/flow" > 0 or "plant/line" = ''RUNNING'''
    - name: derived/long_high
      expression: '"plant/long" >= 10'
    - name: derived/hot_and_open
      expression: '"derived/hot" and "derived/valve_open"'
    - name: plant/m_double
      expression: '"plant/pressure" * 2'
    - name: zz/not_hot
      expression: 'not "derived/hot"'
"""


def load(conn, tenant: str, tags, numeric, strings) -> None:
    births = [(tag_id, name, at(0, day=1, month=1), death) for tag_id, name, death in tags]
    copy_rows(conn, tenant, births, numeric, strings)


@pytest.fixture(scope="module")
def plant(pg_url, admin_conn, tmp_path_factory):
    """The hand-worked tenant, materialised for 03-02 with its derived tags."""
    from tagflow.schemas.source_ddl import create_tenant
    from tests.conftest import drop_tenant, unique_tenant_name

    tenant = unique_tenant_name("derived")
    create_tenant(admin_conn, tenant, "derived-key")
    load(admin_conn, tenant, TAGS, NUMERIC, STRINGS)
    root = tmp_path_factory.mktemp("derived-store")
    definitions = root / "derived.yaml"
    definitions.write_text(DEFINITIONS.format(tenant=tenant))
    settings = Settings(source_url=pg_url, store=str(root / "store"), derived_tags=str(definitions))
    instance = dg.DagsterInstance.ephemeral()
    runs = materialize_days(tenant, DAY, DAY + timedelta(days=1), instance, settings)
    yield tenant, DatasetStore(root / "store"), instance, runs, settings
    drop_tenant(admin_conn, tenant)


def rows_of(store: DatasetStore, tenant: str, dataset: str, name: str) -> list[dict]:
    table = store.read(dataset, tenant, None if dataset == "tags" else DAY)
    return [row for row in table.to_pylist() if row["tag_name"] == name]


def values(rows: list[dict]) -> list:
    out = []
    for row in rows:
        value = row["value_string"] if row.get("value_string") is not None else row["value_double"]
        out.append("NaN" if isinstance(value, float) and math.isnan(value) else value)
    return out


def spans(store, tenant, name) -> list[tuple]:
    return [
        (r["raw_begin_at"], r["begin_at"], r["end_at"], r["raw_end_at"], values([r])[0])
        for r in rows_of(store, tenant, "spans", name)
    ]


def transitions(store, tenant, name) -> list[tuple]:
    rows = rows_of(store, tenant, "transitions", name)
    return list(zip([r["time"] for r in rows], values(rows), strict=True))


def carry_in(store, tenant, name) -> list[tuple]:
    rows = rows_of(store, tenant, "carry_in", name)
    return [(r["time"], r["run_begin_at"], v) for r, v in zip(rows, values(rows), strict=True)]


def test_the_runs_succeed_with_every_check_and_the_files_stay_sorted(plant):
    tenant, store, instance, runs, _ = plant
    assert [run.success for run in runs] == [True]
    assert check_evaluations(instance, runs[0].run_id) == {name: True for name in DATASETS}
    for dataset in DATED:
        names = store.read(dataset, tenant, DAY).column("tag_name").to_pylist()
        assert names == sorted(names), dataset
    tags = store.read("tags", tenant)
    names = tags.column("tag_name").to_pylist()
    assert names == sorted(names)
    derived = {r["tag_name"]: r for r in tags.to_pylist() if r["derived"]}
    assert len(derived) == 9
    assert {r["tag_id"] for r in derived.values()} == {derived_tag_id(n) for n in derived}
    hot = derived["derived/hot"]
    assert hot["expression"] == '"plant/temp" > 280 and "plant/line" = \'RUNNING\''
    assert hot["description"] == "hot while the line runs"
    assert hot["value_kind"] == "numeric"
    assert derived["derived/line_state"]["value_kind"] == "string"
    assert derived["derived/valve_open"]["input_deaths"] == [at(6)]
    assert derived["derived/hot_and_open"]["input_deaths"] == [at(6)]  # through valve_open
    assert derived["derived/hot"]["input_deaths"] == []
    source = [r for r in tags.to_pylist() if not r["derived"]]
    assert len(source) == len(TAGS) and all(r["expression"] is None for r in source)
    # The source rows are all accounted for: derived transitions are counted apart.
    record = instance.fetch_materializations(dg.AssetKey("transitions"), limit=1).records[0]
    metadata = record.asset_materialization.metadata
    derived_rows = sum(
        1 for r in store.read("transitions", tenant, DAY).to_pylist() if r["tag_id"] < 0
    )
    assert metadata["derived_transitions"].value == derived_rows == 26


def test_two_numeric_inputs_and_a_string_input_across_midnight(plant):
    """hot = temp > 280 and line = 'RUNNING': defined from 03-01 22:00 (temp's first row;
    line runs since 20:00) with 290 > 280: 1. Then 01:00 temp 270 → 0; 03:00 300 → 1; 05:00
    STOPPED → 0; 12:00 RUNNING → 1. margin = temp − pressure: 03-01 23:00 290 − 10 = 280;
    01:00 270 − 10 = 260; 02:00 270 − 20 = 250; 03:00 300 − 20 = 280."""
    tenant, store, *_ = plant
    assert carry_in(store, tenant, "derived/hot") == [(at(22, day=1), at(22, day=1), 1.0)]
    assert transitions(store, tenant, "derived/hot") == [
        (at(1), 0.0),
        (at(3), 1.0),
        (at(5), 0.0),
        (at(12), 1.0),
    ]
    assert spans(store, tenant, "derived/hot") == [
        (at(22, day=1), at(0), at(1), at(1), 1.0),
        (at(1), at(1), at(3), at(3), 0.0),
        (at(3), at(3), at(5), at(5), 1.0),
        (at(5), at(5), at(12), at(12), 0.0),
        (at(12), at(12), D1, None, 1.0),
    ]
    assert carry_in(store, tenant, "derived/margin") == [(at(23, day=1), at(23, day=1), 280.0)]
    assert transitions(store, tenant, "derived/margin") == [
        (at(1), 260.0),
        (at(2), 250.0),
        (at(3), 280.0),
    ]
    (daily,) = rows_of(store, tenant, "samples_1d", "derived/margin")
    assert daily["twa"] == pytest.approx((280 + 260 + 250 + 280 * 21) / 24)
    assert (daily["min"], daily["max"], daily["first"], daily["last"]) == (250, 280, 280, 280)
    assert (daily["count"], daily["covered_s"]) == (3, 86400.0)
    hourly = rows_of(store, tenant, "samples_1h", "derived/hot")
    assert [r["twa"] for r in hourly[:6]] == [1.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    assert [r["count"] for r in hourly[:6]] == [0, 1, 0, 1, 0, 1]
    assert len(hourly) == 24 and not rows_of(store, tenant, "samples_str_1h", "derived/hot")
    # A string result: string samples, with its value held longest.
    assert transitions(store, tenant, "derived/line_state") == [
        (at(5), "STOPPED"),
        (at(12), "RUNNING"),
    ]
    (line,) = rows_of(store, tenant, "samples_str_1d", "derived/line_state")
    assert (line["first"], line["last"], line["mode"], line["count"]) == (
        "RUNNING",
        "RUNNING",
        "RUNNING",
        2,
    )
    assert dict(line["held_s"]) == {"RUNNING": 17 * 3600.0, "STOPPED": 7 * 3600.0}
    # Among the source tags: pressure × 2 from 03-01 23:00, 40 from 02:00.
    assert carry_in(store, tenant, "plant/m_double") == [(at(23, day=1), at(23, day=1), 20.0)]
    assert transitions(store, tenant, "plant/m_double") == [(at(2), 40.0)]


def test_an_input_dying_and_being_reborn(plant):
    """valve_open = valve = 1: 1 since 03-01 12:00; valve dies at 06:00, so the derived tag is
    undefined from 06:00 (no transition, like a death) until valve's rebirth at 09:00 (a
    transition, a new run); 15:00 valve 0 → 0. No buckets while undefined."""
    tenant, store, *_ = plant
    assert carry_in(store, tenant, "derived/valve_open") == [(at(12, day=1), at(12, day=1), 1.0)]
    assert transitions(store, tenant, "derived/valve_open") == [(at(9), 1.0), (at(15), 0.0)]
    assert spans(store, tenant, "derived/valve_open") == [
        (at(12, day=1), at(0), at(6), at(6), 1.0),
        (at(9), at(9), at(15), at(15), 1.0),
        (at(15), at(15), D1, None, 0.0),
    ]
    hours = [
        r["bucket_start"].hour for r in rows_of(store, tenant, "samples_1h", "derived/valve_open")
    ]
    assert hours == [h for h in range(24) if h not in (6, 7, 8)]


def test_nan_and_null_inputs_under_three_valued_logic(plant):
    """flow_ok = flow > 0 or line = 'RUNNING': 1 from 03-01 20:00 (5 > 0); 04:00 NaN > 0 is
    NULL, NULL or true = 1 (no change); 05:00 STOPPED: NULL or false = NULL; 07:00 NULL flow:
    still NULL (NULL to NULL is no change); 10:00 −1: false or false = 0; 12:00 RUNNING → 1;
    13:00 2 > 0: still 1. A NULL covers no time: the 05:00 bucket has covered 0 and no twa."""
    tenant, store, *_ = plant
    assert carry_in(store, tenant, "derived/flow_ok") == [(at(20, day=1), at(20, day=1), 1.0)]
    assert transitions(store, tenant, "derived/flow_ok") == [
        (at(5), None),
        (at(10), 0.0),
        (at(12), 1.0),
    ]
    hourly = {
        r["bucket_start"].hour: r for r in rows_of(store, tenant, "samples_1h", "derived/flow_ok")
    }
    assert hourly[5]["covered_s"] == 0 and hourly[5]["twa"] is None and hourly[5]["count"] == 1
    assert hourly[4]["twa"] == 1.0 and hourly[10]["twa"] == 0.0
    spans_ = spans(store, tenant, "derived/flow_ok")
    assert [s[4] for s in spans_] == [1.0, None, 0.0, 1.0]


def test_a_run_that_began_three_days_before_the_partition(plant):
    """long_high = long >= 10: long rose to 12 on 02-27 08:00 and stayed at or above 10 (15,
    then 11) until 08:00 of the day: the run held at 00:00 began on 02-27 08:00, although
    long's own run (11) began on 03-01 08:00."""
    tenant, store, *_ = plant
    began = at(8, day=27, month=2)
    assert carry_in(store, tenant, "derived/long_high") == [(began, began, 1.0)]
    assert spans(store, tenant, "derived/long_high") == [
        (began, at(0), at(8), at(8), 1.0),
        (at(8), at(8), D1, None, 0.0),
    ]
    (source_long,) = carry_in(store, tenant, "plant/long")
    assert source_long[1] == at(8, day=1)


def test_a_derived_tag_built_on_another_derived_tag(plant):
    """hot_and_open = hot and valve_open: 1 from 03-01 22:00; 01:00 → 0; 03:00 → 1; 05:00 → 0;
    undefined from 06:00 (valve's death); 09:00 defined again with hot 0 → 0 (a transition);
    12:00 → 1; 15:00 → 0. zz/not_hot is not hot, written after every source tag."""
    tenant, store, *_ = plant
    assert carry_in(store, tenant, "derived/hot_and_open") == [(at(22, day=1), at(22, day=1), 1.0)]
    assert transitions(store, tenant, "derived/hot_and_open") == [
        (at(1), 0.0),
        (at(3), 1.0),
        (at(5), 0.0),
        (at(9), 0.0),
        (at(12), 1.0),
        (at(15), 0.0),
    ]
    assert spans(store, tenant, "derived/hot_and_open")[3] == (at(5), at(5), at(6), at(6), 0.0)
    assert transitions(store, tenant, "zz/not_hot") == [
        (at(1), 1.0),
        (at(3), 0.0),
        (at(5), 1.0),
        (at(12), 0.0),
    ]


# --- redefinition and late rows: the late-data sensor ----------------------------------------

NOW = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
THREE_DAYS = (date(2026, 3, 1), date(2026, 3, 4))


def write_definitions(path: Path, tenant: str, entries: dict[str, str]) -> None:
    lines = ["tenants:", f"  {tenant}:"]
    for name, expression in entries.items():
        lines += [f"    - name: {name}", f"      expression: '{expression}'"]
    path.write_text("\n".join(lines) + "\n")


def tick(instance, pg_url, definitions: Path) -> list[str]:
    settings = Settings(late_data_lookback_days=7, derived_tags=str(definitions))
    sensor = build_late_data_sensor(settings, clock=lambda: NOW)
    context = dg.build_sensor_context(
        instance=instance, resources={"source": SourceDatabase(url=pg_url)}
    )
    result = sensor(context)
    requests = [] if isinstance(result, dg.SkipReason) else result
    return sorted(r.partition_key.keys_by_dimension["date"] for r in requests)


def materialise(tenant, instance, pg_url, root: Path, definitions: Path, days) -> None:
    settings = Settings(source_url=pg_url, store=str(root / "store"), derived_tags=str(definitions))
    for day in days:
        start = date.fromisoformat(day) if isinstance(day, str) else day
        runs = materialize_days(tenant, start, start + timedelta(days=1), instance, settings)
        assert all(run.success for run in runs)


@pytest.fixture
def three_days(make_tenant, admin_conn, pg_url, tmp_path):
    """a: a row on 03-01, dead from 03-02 00:00 (present on 03-01 only); b: a row on 03-02
    (present 03-02, and 03-03 by its carry-in); c: above 280 since 02-27 (present every day)."""
    tenant = make_tenant().name
    tags = [(1, "a", at(0)), (2, "b", None), (3, "c", None)]
    numeric = [
        (1, at(10, day=1), 1.0),
        (2, at(12), 2.0),
        (3, at(10, day=27, month=2), 290.0),
        (3, at(10, day=28, month=2), 300.0),
    ]
    load(admin_conn, tenant, tags, numeric, [])
    definitions = tmp_path / "derived.yaml"
    entries = {"x": "a + 1", "y": "b * 2", "w": "c > 280"}
    write_definitions(definitions, tenant, entries)
    with dg.instance_for_test() as instance:
        materialise(
            tenant, instance, pg_url, tmp_path, definitions, [date(2026, 3, d) for d in (1, 2, 3)]
        )
        yield tenant, instance, definitions, entries


def test_redefinition_reruns_exactly_the_days_it_affects(three_days, pg_url, tmp_path, admin_conn):
    tenant, instance, definitions, entries = three_days
    assert tick(instance, pg_url, definitions) == []

    write_definitions(definitions, tenant, {**entries, "y": "b * 3"})
    assert tick(instance, pg_url, definitions) == ["2026-03-02", "2026-03-03"]
    materialise(tenant, instance, pg_url, tmp_path, definitions, ["2026-03-02", "2026-03-03"])
    assert tick(instance, pg_url, definitions) == []
    store = DatasetStore(tmp_path / "store")
    (y,) = [
        r
        for r in store.read("transitions", tenant, date(2026, 3, 2)).to_pylist()
        if r["tag_name"] == "y"
    ]
    assert y["value_double"] == 6.0

    entries = {**entries, "y": "b * 3", "x": "a - 1"}
    write_definitions(definitions, tenant, entries)
    assert tick(instance, pg_url, definitions) == ["2026-03-01"]
    materialise(tenant, instance, pg_url, tmp_path, definitions, ["2026-03-01"])

    # A new tag reading a and c: present where both are, 03-01 only.
    entries = {**entries, "z": "a > 0 and c > 0"}
    write_definitions(definitions, tenant, entries)
    assert tick(instance, pg_url, definitions) == ["2026-03-01"]
    materialise(tenant, instance, pg_url, tmp_path, definitions, ["2026-03-01"])
    assert tick(instance, pg_url, definitions) == []

    # A late row on 02-27 moves the start of w's run (c > 280) to 02-28 10:00 without touching
    # c's carry-in of any later day (300 since 02-28 10:00): every day's derived run changes.
    table = sql.SQL("INSERT INTO {}.tag_data VALUES (3, %s, 250.0)").format(sql.Identifier(tenant))
    admin_conn.execute(table, (at(12, day=27, month=2),))
    assert tick(instance, pg_url, definitions) == ["2026-03-01", "2026-03-02", "2026-03-03"]
    materialise(tenant, instance, pg_url, tmp_path, definitions, ["2026-03-03"])
    (w,) = [
        r for r in store.read("spans", tenant, date(2026, 3, 3)).to_pylist() if r["tag_name"] == "w"
    ]
    assert w["raw_begin_at"] == at(10, day=28, month=2)


def test_without_derived_tags_the_data_versions_are_those_of_the_source(
    three_days, pg_url, tmp_path
):
    """Removing every definition reruns the days that had a derived tag; afterwards each day's
    version is the source fingerprint alone, as it was before derived tags existed."""
    tenant, instance, definitions, _ = three_days
    definitions.write_text("tenants: {}\n")
    assert tick(instance, pg_url, definitions) == ["2026-03-01", "2026-03-02", "2026-03-03"]
    materialise(
        tenant, instance, pg_url, tmp_path, definitions, ["2026-03-01", "2026-03-02", "2026-03-03"]
    )
    assert tick(instance, pg_url, definitions) == []
    with connect(pg_url) as conn:
        version = day_fingerprint(conn, tenant, at(0), at(0, day=3)).version
    assert recorded_source_version(instance, tenant, "2026-03-02") == version


def test_a_broken_definitions_file_stops_the_code_location(tmp_path):
    from tagflow.errors import InvalidDerivedTag
    from tagflow.pipelines.definitions import build_definitions

    path = tmp_path / "derived.yaml"
    path.write_text("tenants:\n  acme:\n    - name: x\n      expression: 'a >'\n")
    settings = Settings(source_url="postgresql://nobody@127.0.0.1:1/none", derived_tags=str(path))
    with pytest.raises(InvalidDerivedTag, match="tenant 'acme', derived tag 'x'"):
        build_definitions(settings)


def test_a_derived_tag_reading_an_unknown_tag_stops_materialize_before_any_run(
    make_tenant, admin_conn, pg_url, tmp_path
):
    from tagflow.errors import InvalidDerivedTag

    tenant = make_tenant().name
    load(admin_conn, tenant, [(1, "a", None)], [(1, at(1), 1.0)], [])
    definitions = tmp_path / "derived.yaml"
    write_definitions(definitions, tenant, {"x": "a + nope"})
    settings = Settings(source_url=pg_url, store=str(tmp_path / "s"), derived_tags=str(definitions))
    with dg.instance_for_test() as instance, pytest.raises(InvalidDerivedTag, match="nope"):
        materialize_days(tenant, DAY, DAY + timedelta(days=1), instance, settings)
    assert not (tmp_path / "s").exists()
