"""Days not materialised are answered from the source with the same transforms: complete,
equal to the materialised answer, and consistent across the boundary; with
allow_source=False they are a NotMaterialised error naming the days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from tagflow.cli.runs import materialize_days
from tagflow.demo.synthetic_plant import generate_plant
from tagflow.io_managers import DatasetStore
from tagflow.readapi import Client, NotMaterialised
from tagflow.readapi.engine.coverage import FreshCache
from tagflow.settings import Settings
from tests.conftest import drop_tenant, unique_tenant_name
from tests.readapi.conftest import copy_days, reference_of
from tests.readapi.expected import (
    all_answers,
    assert_same_answers,
    assert_wide_equals,
    expected_spans,
    expected_transitions,
    expected_wide,
)

D1 = datetime(2026, 3, 1, tzinfo=UTC)


def day(n: int) -> datetime:
    return D1 + timedelta(days=n - 1)


@pytest.fixture(scope="module")
def gap_store(plant, tmp_path_factory):
    """The plant's first tenant with day 2 missing from the store (days 1 and 3 only)."""
    tenant = plant.tenants[0]
    root = tmp_path_factory.mktemp("gap-store")
    copy_days(plant.root, root, tenant, [date(2026, 3, 1), date(2026, 3, 3)])
    return tenant, root


@pytest.mark.parametrize(
    "time_range",
    [
        (day(1), day(4)),
        (day(2), day(3)),
        (day(1) + timedelta(hours=20, seconds=5.5), day(2) + timedelta(hours=3, minutes=7)),
    ],
)
def test_a_missing_day_from_the_source_equals_the_materialised_answer(
    plant, gap_store, pg_url, time_range
):
    tenant, gap_root = gap_store
    with (
        Client(store=plant.root, tenant=tenant, source_url=pg_url) as full,
        Client(store=gap_root, tenant=tenant, source_url=pg_url) as gap,
    ):
        names = [tag.name for tag in full.get_tags()]
        want = all_answers(full, names, time_range)
        got = all_answers(gap, names, time_range)
    assert_same_answers(got, want)


def test_missing_days_without_fallback_are_named(gap_store, pg_url):
    tenant, gap_root = gap_store
    client = Client(store=gap_root, tenant=tenant, source_url=pg_url, allow_source=False)
    with pytest.raises(NotMaterialised, match=r"2026-03-02 \(1 day\)"):
        client.get_spans("plant/special/constant", (day(1), day(4)))
    with pytest.raises(NotMaterialised, match=r"2026-03-02, 2026-03-04 \(2 days\)"):
        client.sample_metric_data("1h", time_range=(day(2) + timedelta(hours=1), day(5)))
    # materialised days alone are fine
    assert client.get_spans("plant/special/constant", (day(3), day(4)))


def test_coverage_is_listed_once_until_a_day_is_published(plant, tmp_path, monkeypatch):
    tenant = plant.tenants[0]
    copy_days(plant.root, tmp_path, tenant, [date(2026, 3, 1)])
    client = Client(store=tmp_path, tenant=tenant, allow_source=False, cache_ttl_s=3600)
    listings = []
    listed = DatasetStore.materialised_days
    monkeypatch.setattr(
        DatasetStore,
        "materialised_days",
        lambda self, *args: listings.append(args) or listed(self, *args),
    )
    for _ in range(3):
        with pytest.raises(NotMaterialised):
            client.get_tags((day(2), day(3)))
    assert len(listings) == 2  # one walk of each leaf dataset's folder, not one per call
    copy_days(plant.root, tmp_path, tenant, [date(2026, 3, 2)])  # published: seen at once
    assert client.get_tags((day(2), day(3)))
    assert len(listings) == 4


def test_entries_without_a_version_live_for_the_ttl():
    """An object store cannot say cheaply whether a listing changed: its entries expire."""
    now = [0.0]
    cache: FreshCache[int] = FreshCache(30.0, clock=lambda: now[0])
    computed = iter(range(10))
    assert cache.get("t", lambda: next(computed)) == 0
    now[0] = 29.0
    assert cache.get("t", lambda: next(computed)) == 0
    now[0] = 31.0
    assert cache.get("t", lambda: next(computed)) == 1
    assert cache.get("t", lambda: next(computed), version=("a",)) == 2
    assert cache.get("t", lambda: next(computed), version=("a",)) == 2
    now[0] = 1e9  # a versioned entry holds while its version does
    assert cache.get("t", lambda: next(computed), version=("a",)) == 2
    assert cache.get("t", lambda: next(computed), version=("b",)) == 3


@pytest.fixture(scope="module")
def late_rows_tenant(pg_url: str, admin_conn: psycopg.Connection, tmp_path_factory):
    """A tenant with days 1-3 materialised and rows for day 4 inserted into the source
    afterwards (late data the store has not seen)."""
    tenant = unique_tenant_name("late")
    generate_plant(pg_url, [tenant], tags=14, days=3, start=D1.date(), seed=11, rows_per_tag_day=24)
    root = tmp_path_factory.mktemp("late-store")
    runs = materialize_days(
        tenant,
        day(1).date(),
        day(4).date(),
        dg.DagsterInstance.ephemeral(),
        Settings(source_url=pg_url, store=str(root)),
    )
    assert all(run.success for run in runs)
    s = sql.Identifier(tenant)
    ids = dict(
        admin_conn.execute(
            sql.SQL("SELECT normalized_name, id FROM {}.tag_names").format(s)
        ).fetchall()
    )
    analog = next(i for name, i in ids.items() if "analog" in name)
    state = next(i for name, i in ids.items() if "state" in name)
    constant = ids["plant/special/constant"]
    numeric = [
        (analog, day(4) + timedelta(hours=h, minutes=13), 500.0 + h) for h in range(0, 24, 3)
    ]
    numeric += [
        (constant, day(4) + timedelta(hours=12), 42.0),  # repeats: the run continues
        (analog, day(5) + timedelta(hours=1), 7.0),
    ]
    strings = [
        (state, day(4) + timedelta(hours=5), "FAULT"),
        (state, day(4) + timedelta(hours=6), "IDLE"),
    ]
    with admin_conn.cursor() as cur:
        cur.executemany(sql.SQL("INSERT INTO {}.tag_data VALUES (%s, %s, %s)").format(s), numeric)
        cur.executemany(
            sql.SQL("INSERT INTO {}.tag_data_str VALUES (%s, %s, %s)").format(s), strings
        )
    yield tenant, root, reference_of(admin_conn, tenant)
    drop_tenant(admin_conn, tenant)


def test_late_rows_of_an_unmaterialised_day_are_read_from_the_source(late_rows_tenant, pg_url):
    tenant, root, ref = late_rows_tenant
    start, end = day(2), day(6)
    with Client(store=root, tenant=tenant, source_url=pg_url) as client:
        names = [tag.name for tag in client.get_tags()]
        for name in names:
            assert client.get_spans(name, (start, end)) == expected_spans(ref, name, start, end)
        constant = client.get_spans("plant/special/constant", (start, end))
        assert len(constant) == 1 and constant[0].end_at == end
        frame = client.get_metric_data(None, (start, end))
        assert len(frame) == len(expected_transitions(ref, start, end))
        assert (frame["time"] >= day(4)).sum() == 12
        kinds = {tag: ("string" if "state" in tag else "numeric") for tag in names}
        kinds.update({"plant/special/mixed": "mixed", "plant/special/empty": None})
        for aggregate in ("average", "last", "count"):
            wide = client.sample_metric_data(
                "3h", aggregate_function=aggregate, time_range=(start, end)
            )
            want = expected_wide(
                ref, start, end, timedelta(hours=3), timedelta(0), aggregate, kinds
            )
            assert_wide_equals(wide, want, aggregate)
    strict = Client(store=root, tenant=tenant, source_url=pg_url, allow_source=False)
    with pytest.raises(NotMaterialised, match=r"2026-03-04\.\.2026-03-05 \(2 days\)"):
        strict.get_spans("plant/special/constant", (start, end))
