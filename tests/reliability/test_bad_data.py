"""A corpus of awkward source data materialised through Dagster: every run and check succeeds,
no row is lost silently (rows in = rows kept + duplicates dropped + orphans skipped, from the
materialisation metadata, and rows at ±infinity counted as out of range) and hand-computed
values hold for each awkward case."""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tagflow.cli.runs import materialize_days
from tagflow.io_managers import DatasetStore
from tagflow.schemas.registry import DATASETS
from tagflow.settings import Settings
from tests.conftest import copy_rows
from tests.pipelines.test_materialize import check_evaluations, source_rows_in_range

DAY = date(2026, 3, 2)
D0 = datetime(2026, 3, 2, tzinfo=UTC)
D1 = D0 + timedelta(days=1)
BIRTH = datetime(1899, 12, 31, tzinfo=UTC)
DIED = datetime(2026, 3, 1, 6, tzinfo=UTC)
US = timedelta(microseconds=1)
BIG = "x" * 999_999 + "!"  # one million characters
ODD_NAME = "ünï/🔥 \"quoted\" 'single'\nsecond line;--"
ODD_VALUE = "emoji 🚀 \"dq\" 'sq'\r\nnext\tline \\ done"


def at(hour: int, minute: int = 0, day: int = 2) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


# (id, name, death_at); every tag is born long before any row, but for the ones in BIRTHS.
TAGS = [
    (1, "bad/nan_inf_null", None),
    (2, "bad/duplicates", None),
    (3, "bad/no_rows", None),
    (4, "bad/dead_before_day", DIED),
    (5, "bad/reborn", DIED),
    (6, "bad/mixed", None),
    (7, "bad/big_string", None),
    (8, ODD_NAME, None),
    (9, "bad/midnight_edges", None),
    (10, "bad/far_past_future", None),
    (11, "bad/infinite_times", None),
    (12, "bad/infinite_birth_death", "-infinity"),  # a death at -infinity changes nothing
    (13, "bad/born_at_infinity", "infinity"),
]
BIRTHS = {12: "-infinity", 13: "infinity"}  # ±infinity births and deaths mean NULL
NUMERIC = [
    (1, at(12, day=1), 2.0),
    (1, at(1), math.nan),
    (1, at(2), math.inf),
    (1, at(3), -math.inf),
    (1, at(4), None),
    (1, at(5), 1.5),
    # Four rows at one instant: NaN wins (above every number), three are dropped.
    (2, at(6), 1.0),
    (2, at(6), 5.0),
    (2, at(6), math.nan),
    (2, at(6), None),
    (2, at(7), 9.0),  # loses to the string row at the same instant
    (4, at(1, day=1), 3.0),
    (5, at(1, day=1), 1.0),
    (5, at(20, day=1), 7.0),  # after its death: the tag is reborn before the day
    (5, at(10), 8.0),
    (6, at(1), 1.0),
    (6, at(3), 3.0),
    (9, D0 - US, 1.0),
    (9, D0, 2.0),
    (9, D1 - US, 3.0),
    (9, D1, 4.0),
    (10, datetime(1900, 1, 1, tzinfo=UTC), 1.0),
    (10, datetime(2200, 1, 1, tzinfo=UTC), 2.0),
    (999, at(12), 5.0),  # no tag 999 in tag_names
    # No day holds a time of ±infinity: skipped, counted as out of range, never carried in.
    (11, "-infinity", 1.0),
    (11, at(8), 3.0),
    (11, "infinity", 2.0),
    (12, at(1, day=1), 4.0),
    (13, at(2), 5.0),
]
STRINGS = [
    (2, at(7), "s"),
    (2, at(7, 30), "a"),
    (2, at(7, 30), "b"),  # the greatest string wins
    (6, at(2), "one"),
    (7, at(9), BIG),
    # Held for a minute only: a 1 MB string held for hours is copied into every 1-minute
    # bucket's first/last/mode/held_s (~4 MB a row), which is correct but slow for CI.
    (7, at(9, 1), "after"),
    (8, at(10), ODD_VALUE),
    (8, at(11), None),
    (999, at(12, 30), "orphan"),
    (11, "infinity", "never"),
]
OUT_OF_RANGE = 3


def load_corpus(conn, tenant: str) -> None:
    """COPY the corpus in a shuffled order: out-of-order rows are the normal case."""
    numeric, strings = list(NUMERIC), list(STRINGS)
    random.Random(3).shuffle(numeric)
    random.Random(4).shuffle(strings)
    tags = [(tag_id, name, BIRTHS.get(tag_id, BIRTH), death) for tag_id, name, death in TAGS]
    copy_rows(conn, tenant, tags, numeric, strings)


@pytest.fixture(scope="module")
def corpus(pg_url, admin_conn, tmp_path_factory):
    """The corpus tenant, materialised for 03-01 and 03-02 in one ephemeral instance."""
    from tagflow.schemas.source_ddl import create_tenant
    from tests.conftest import drop_tenant, unique_tenant_name

    tenant = unique_tenant_name("bad")
    create_tenant(admin_conn, tenant, "bad-data-key")
    load_corpus(admin_conn, tenant)
    root = tmp_path_factory.mktemp("bad-store")
    instance = dg.DagsterInstance.ephemeral()
    runs = materialize_days(
        tenant,
        date(2026, 3, 1),
        date(2026, 3, 3),
        instance,
        Settings(source_url=pg_url, store=str(root)),
    )
    yield tenant, DatasetStore(root), instance, runs
    drop_tenant(admin_conn, tenant)


def rows_of(table: pa.Table, tag_name: str) -> list[dict]:
    return table.filter(pc.equal(table["tag_name"], tag_name)).to_pylist()


def test_every_run_and_check_succeeds_on_bad_data(corpus):
    _, _, instance, runs = corpus
    assert [run.success for run in runs] == [True, True]
    for run in runs:
        assert check_evaluations(instance, run.run_id) == {name: True for name in DATASETS}


def test_rows_in_equal_rows_kept_plus_counted_skips(corpus, admin_conn):
    tenant, store, instance, _ = corpus
    records = instance.fetch_materializations(dg.AssetKey("transitions"), limit=10).records
    by_day = {r.asset_materialization.partition: r.asset_materialization.metadata for r in records}
    for day in (date(2026, 3, 1), DAY):
        (meta,) = [m for key, m in by_day.items() if day.isoformat() in key]
        start = datetime.combine(day, datetime.min.time(), UTC)
        rows_in = source_rows_in_range(admin_conn, tenant, start, start + timedelta(days=1))
        kept = store.read("transitions", tenant, day).num_rows
        skipped = meta["duplicates_dropped"].value + meta["orphans_skipped"].value
        assert meta["rows_in"].value == rows_in
        assert kept + skipped == rows_in
    meta = next(m for key, m in by_day.items() if DAY.isoformat() in key)
    # Hand count on 03-02: 3 numbers at 06:00, the number at 07:00 and "a" at 07:30 dropped;
    # tag 999's number and string skipped.
    assert meta["duplicates_dropped"].value == 5
    assert meta["orphans_skipped"].value == 2


def test_rows_at_infinite_times_are_counted_out_of_range(corpus):
    tenant, store, instance, _ = corpus
    records = instance.fetch_materializations(dg.AssetKey("tags"), limit=10).records
    assert len(records) == 2
    for record in records:
        assert record.asset_materialization.metadata["out_of_range_skipped"].value == OUT_OF_RANGE
    assert rows_of(store.read("carry_in", tenant, DAY), "bad/infinite_times") == []
    (span,) = rows_of(store.read("spans", tenant, DAY), "bad/infinite_times")
    assert (span["value_double"], span["begin_at"], span["end_at"]) == (3.0, at(8), D1)
    assert span["raw_end_at"] is None  # the row at +infinity is no transition


def test_infinite_births_and_deaths_mean_none(corpus):
    tenant, store, _, _ = corpus
    tags = {row["tag_name"]: row for row in store.read("tags", tenant).to_pylist()}
    for name in ("bad/infinite_birth_death", "bad/born_at_infinity"):
        assert (tags[name]["birth_at"], tags[name]["death_at"]) == (None, None)
    (alive,) = rows_of(store.read("spans", tenant, DAY), "bad/infinite_birth_death")
    assert (alive["value_double"], alive["begin_at"], alive["end_at"]) == (4.0, D0, D1)
    (born,) = rows_of(store.read("spans", tenant, DAY), "bad/born_at_infinity")
    assert (born["value_double"], born["begin_at"], born["end_at"]) == (5.0, at(2), D1)


def test_duplicates_resolve_as_design_says(corpus):
    tenant, store, _, _ = corpus
    rows = rows_of(store.read("transitions", tenant, DAY), "bad/duplicates")
    assert [(r["time"], r["value_kind"]) for r in rows] == [
        (at(6), "numeric"),
        (at(7), "string"),
        (at(7, 30), "string"),
    ]
    assert math.isnan(rows[0]["value_double"])
    assert [r["value_string"] for r in rows[1:]] == ["s", "b"]


def test_nan_inf_and_null_are_gaps_in_numeric_samples(corpus):
    tenant, store, _, _ = corpus
    hours = {
        r["bucket_start"].hour: r
        for r in rows_of(store.read("samples_1h", tenant, DAY), "bad/nan_inf_null")
    }
    assert hours[0]["twa"] == 2.0 and hours[0]["covered_s"] == 3600  # carried in from 03-01
    for gap_hour in (1, 2, 3, 4):  # NaN, +inf, -inf, NULL: alive, but no usable number
        assert hours[gap_hour]["covered_s"] == 0 and hours[gap_hour]["twa"] is None
    assert hours[5]["twa"] == 1.5 and hours[23]["covered_s"] == 3600
    (whole_day,) = rows_of(store.read("samples_1d", tenant, DAY), "bad/nan_inf_null")
    assert whole_day["covered_s"] == 20 * 3600
    assert whole_day["twa"] == pytest.approx((2.0 * 1 + 1.5 * 19) / 20)
    assert (whole_day["min"], whole_day["max"], whole_day["count"]) == (1.5, 2.0, 5)


def test_dead_reborn_and_rowless_tags(corpus):
    tenant, store, _, _ = corpus
    carry_in = store.read("carry_in", tenant, DAY)
    spans = store.read("spans", tenant, DAY)
    assert rows_of(carry_in, "bad/dead_before_day") == [] == rows_of(spans, "bad/dead_before_day")
    (reborn,) = rows_of(carry_in, "bad/reborn")
    assert reborn["value_double"] == 7.0 and reborn["run_begin_at"] == at(20, day=1)
    assert [
        (s["value_double"], s["begin_at"], s["end_at"]) for s in rows_of(spans, "bad/reborn")
    ] == [
        (7.0, D0, at(10)),
        (8.0, at(10), D1),
    ]
    tags = {row["tag_name"]: row for row in store.read("tags", tenant).to_pylist()}
    assert len(tags) == len(TAGS)  # the orphan's id 999 is no tag
    assert tags["bad/no_rows"]["value_kind"] is None
    assert tags["bad/mixed"]["value_kind"] == "mixed"
    for dataset in ("transitions", "carry_in", "spans", "samples_1h", "samples_str_1h"):
        assert rows_of(store.read(dataset, tenant, DAY), "bad/no_rows") == []


def test_mixed_tag_appears_in_numeric_and_string_samples(corpus):
    tenant, store, _, _ = corpus
    numeric = {
        r["bucket_start"].hour: r
        for r in rows_of(store.read("samples_1h", tenant, DAY), "bad/mixed")
    }
    strings = {
        r["bucket_start"].hour: r
        for r in rows_of(store.read("samples_str_1h", tenant, DAY), "bad/mixed")
    }
    assert numeric[1]["twa"] == 1.0 and numeric[2]["covered_s"] == 0  # the string is a gap
    assert strings[2]["mode"] == "one" and strings[2]["covered_s"] == 3600
    assert strings[3]["covered_s"] == 0  # and the number a gap for strings


def test_huge_and_unicode_strings_round_trip_exactly(corpus):
    tenant, store, _, _ = corpus
    transitions = store.read("transitions", tenant, DAY)
    big = rows_of(transitions, "bad/big_string")
    assert [r["value_string"] for r in big] == [BIG, "after"]
    (minute,) = [
        r
        for r in rows_of(store.read("samples_str_1m", tenant, DAY), "bad/big_string")
        if r["bucket_start"] == at(9)
    ]
    assert minute["mode"] == BIG and minute["held_s"] == [(BIG, 60.0)]
    odd = rows_of(transitions, ODD_NAME)
    assert [r["value_string"] for r in odd] == [ODD_VALUE, None]
    (mode,) = [r for r in rows_of(store.read("samples_str_1d", tenant, DAY), ODD_NAME)]
    assert mode["mode"] == ODD_VALUE and mode["covered_s"] == 3600  # 10:00-11:00, then NULL
    assert ODD_NAME in store.read("tags", tenant).column("tag_name").to_pylist()


def test_microsecond_edges_of_midnight_and_far_timestamps(corpus):
    tenant, store, _, _ = corpus
    transitions = store.read("transitions", tenant, DAY)
    edges = rows_of(transitions, "bad/midnight_edges")
    assert [(r["time"], r["value_double"]) for r in edges] == [(D0, 2.0), (D1 - US, 3.0)]
    (carried,) = rows_of(store.read("carry_in", tenant, DAY), "bad/midnight_edges")
    assert (carried["time"], carried["value_double"]) == (D0 - US, 1.0)
    # 03-01's last microsecond belongs to 03-01's file, not 03-02's.
    previous = rows_of(store.read("transitions", tenant, date(2026, 3, 1)), "bad/midnight_edges")
    assert [r["time"] for r in previous] == [D0 - US]
    (far,) = rows_of(store.read("spans", tenant, DAY), "bad/far_past_future")
    assert far["raw_begin_at"] == datetime(1900, 1, 1, tzinfo=UTC)
    assert far["raw_end_at"] is None  # the next value (2200) is not before the day's end
    assert (far["begin_at"], far["end_at"], far["value_double"]) == (D0, D1, 1.0)


def test_the_streamed_fingerprint_equals_the_one_computed_in_sql(corpus, admin_conn):
    """What the day asset records as its data version (hashed from the rows it streamed) is
    what the late-data sensor computes in SQL, on every awkward case of the corpus."""
    from tagflow.source.fingerprints import day_fingerprint

    tenant, _, instance, _ = corpus
    recorded = instance.event_log_storage.get_latest_tags_by_partition(
        dg.AssetKey("transitions"),
        dg.DagsterEventType.ASSET_MATERIALIZATION,
        ["dagster/data_version"],
    )
    for day in (date(2026, 3, 1), DAY):
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        in_sql = day_fingerprint(admin_conn, tenant, start, start + timedelta(days=1))
        key = f"{day.isoformat()}|{tenant}"
        assert recorded[key]["dagster/data_version"] == in_sql.version
