"""Hand-computed answers (the worked example of DESIGN §2, a counter with resets, a string
tag), read from materialised days and, with an empty store, entirely from the source."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from tagflow.cli.runs import materialize_days
from tagflow.readapi import Client, Span
from tagflow.schemas.source_ddl import create_tenant
from tagflow.settings import Settings
from tests.conftest import drop_tenant, unique_tenant_name

D1 = datetime(2026, 3, 1, tzinfo=UTC)
D2 = D1 + timedelta(days=1)
D3 = D2 + timedelta(days=1)
NAN = float("nan")


def t(day: datetime, clock: str) -> datetime:
    hours, minutes = (int(part) for part in clock.split(":"))
    return day + timedelta(hours=hours, minutes=minutes)


TAGS = [
    (1, "T", D1, t(D2, "02:30")),
    (2, "C", D1, None),
    (3, "S", D1, None),
]
NUMERIC_ROWS = [
    # the worked example: the 20 at 01:00 repeats, NaN is a gap, death at 02:30
    (1, t(D1, "22:00"), 10.0),
    (1, t(D2, "00:30"), 20.0),
    (1, t(D2, "01:00"), 20.0),
    (1, t(D2, "01:15"), NAN),
    (1, t(D2, "01:45"), 30.0),
    # a counter: +50, reset to 20, +30, reset to 45
    (2, t(D1, "23:00"), 100.0),
    (2, t(D2, "00:10"), 150.0),
    (2, t(D2, "00:40"), 20.0),
    (2, t(D2, "01:20"), 50.0),
    (2, t(D2, "01:50"), 45.0),
]
STRING_ROWS = [(3, t(D2, "00:00"), "A"), (3, t(D2, "00:20"), "B"), (3, t(D2, "01:00"), "A")]


def load_hand_tenant(
    admin_conn: psycopg.Connection, pg_url: str, tmp_path_factory, prefix: str, key: str
) -> tuple[str, Path]:
    """A new tenant holding the hand-worked rows, with 03-01 and 03-02 materialised in a
    store of its own: (tenant, store root)."""
    tenant = unique_tenant_name(prefix)
    create_tenant(admin_conn, tenant, key)
    s = sql.Identifier(tenant)
    with admin_conn.cursor() as cur:
        cur.executemany(
            sql.SQL(
                "INSERT INTO {}.tag_names (id, normalized_name, birth_at, death_at) "
                "VALUES (%s, %s, %s, %s)"
            ).format(s),
            TAGS,
        )
        cur.executemany(
            sql.SQL("INSERT INTO {}.tag_data VALUES (%s, %s, %s)").format(s), NUMERIC_ROWS
        )
        cur.executemany(
            sql.SQL("INSERT INTO {}.tag_data_str VALUES (%s, %s, %s)").format(s), STRING_ROWS
        )
    root = tmp_path_factory.mktemp(f"{prefix}-store")
    runs = materialize_days(
        tenant,
        D1.date(),
        D3.date(),
        dg.DagsterInstance.ephemeral(),
        Settings(source_url=pg_url, store=str(root)),
    )
    assert all(run.success for run in runs)
    return tenant, root


@pytest.fixture(scope="module")
def hand_tenant(admin_conn: psycopg.Connection, pg_url: str, tmp_path_factory):
    """(tenant, store root with 03-01 and 03-02 materialised, an empty store root)."""
    tenant, root = load_hand_tenant(
        admin_conn, pg_url, tmp_path_factory, "hand", "hand-example-key"
    )
    yield tenant, root, tmp_path_factory.mktemp("empty-store")
    drop_tenant(admin_conn, tenant)


@pytest.fixture(params=["materialised", "source only"], scope="module")
def client(request, hand_tenant, pg_url):
    tenant, root, empty = hand_tenant
    store = root if request.param == "materialised" else empty
    with Client(store=store, tenant=tenant, source_url=pg_url) as client:
        yield client


def test_spans_of_the_worked_example(client):
    spans = client.get_spans("T", (D2, D3))
    expected = [
        (30.0, t(D2, "01:45"), t(D2, "02:30"), t(D2, "01:45"), t(D2, "02:30")),
        (NAN, t(D2, "01:15"), t(D2, "01:45"), t(D2, "01:15"), t(D2, "01:45")),
        (20.0, t(D2, "00:30"), t(D2, "01:15"), t(D2, "00:30"), t(D2, "01:15")),
        (10.0, D2, t(D2, "00:30"), t(D1, "22:00"), t(D2, "00:30")),
    ]
    got = [(s.value, s.begin_at, s.end_at, s.raw_begin_at, s.raw_end_at) for s in spans]
    assert len(got) == len(expected)
    for row, want in zip(got, expected, strict=True):
        assert (math.isnan(row[0]) and math.isnan(want[0])) or row[0] == want[0]
        assert row[1:] == want[1:]


def test_span_crossing_midnight_keeps_raw_begin_and_unknown_end(client):
    spans = client.get_spans("T", (t(D1, "23:00"), t(D2, "01:30")))
    assert [(s.value, s.raw_end_at) for s in spans[1:]] == [
        (20.0, t(D2, "01:15")),
        (10.0, t(D2, "00:30")),
    ]
    newest = spans[0]
    assert math.isnan(newest.value) and newest.raw_end_at is None
    assert newest.end_at == t(D2, "01:30")
    assert spans[-1] == Span(
        id=spans[-1].id,
        tag_name="T",
        value=10.0,
        begin_at=t(D1, "23:00"),
        end_at=t(D2, "00:30"),
        raw_begin_at=t(D1, "22:00"),
        raw_end_at=t(D2, "00:30"),
    )


def test_hourly_samples_of_the_worked_example(client):
    frames = {
        agg: client.sample_metric_data(
            "1h", aggregate_function=agg, tag_names=["T"], time_range=(D2, D3)
        )["T"].tolist()
        for agg in ("average", "min", "max", "first", "last", "count")
    }
    assert frames["average"][:3] == [15.0, 25.0, 30.0]
    assert frames["min"][:3] == [10.0, 20.0, 30.0]
    assert frames["max"][:3] == [20.0, 30.0, 30.0]
    assert frames["first"][:3] == [10.0, 20.0, 30.0]
    assert frames["last"][:3] == [20.0, 30.0, 30.0]
    assert frames["count"] == [1, 3] + [0] * 22
    assert all(math.isnan(v) for v in frames["average"][3:])  # dead from 02:30 on


def test_derivative_of_the_hourly_average(client):
    rate = client.derivative("1h", tag_names="T", time_range=(D2, t(D2, "04:00")))["T"].tolist()
    assert math.isnan(rate[0]) and math.isnan(rate[3])
    assert rate[1:3] == [10 / 3600, 5 / 3600]


def test_counter_rate_treats_drops_as_resets(client):
    frame = client.counter_rate("1h", tag_names=["C"], time_range=(D2, t(D2, "03:00")))
    assert frame["C"].tolist() == [70 / 3600, 75 / 3600, 0.0]
    partial = client.counter_rate("1h", tag_names="C", time_range=(t(D2, "00:30"), t(D2, "01:30")))
    # 00:40 drop to 20 counts 20 over the 30 minutes inside; 01:20 +30 over 30 minutes
    assert partial["C"].tolist() == [20 / 1800, 30 / 1800]


def test_string_tag_samples_and_metric_data(client):
    first = client.sample_metric_data(
        "1h", aggregate_function="first", tag_names="S", time_range=(D2, t(D2, "03:00"))
    )["S"].tolist()
    last = client.sample_metric_data(
        "1h", aggregate_function="last", tag_names="S", time_range=(D2, t(D2, "03:00"))
    )["S"].tolist()
    assert first == ["A", "A", "A"] and last == ["B", "A", "A"]
    average = client.sample_metric_data("1h", tag_names="S", time_range=(D2, t(D2, "03:00")))
    assert average["S"].isna().all()
    data = client.get_metric_data(["S", "T"], (D2, t(D2, "01:00")))
    assert data[["tag_name", "value"]].values.tolist() == [["S", "A"], ["S", "B"], ["T", 20.0]]


def test_tags_active_in_a_range(client):
    assert [tag.name for tag in client.get_tags((t(D1, "22:30"), t(D1, "23:30")))] == ["C"]
    assert [tag.name for tag in client.get_tags((D2, D3))] == ["C", "S", "T"]
    tag_t = next(tag for tag in client.get_tags() if tag.name == "T")
    assert (tag_t.id, tag_t.birth_at, tag_t.death_at) == (1, D1, t(D2, "02:30"))
