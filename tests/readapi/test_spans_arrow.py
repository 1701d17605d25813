"""get_spans_arrow, the columnar answer of get_spans: the same spans in the same order as one
Arrow table, on the hand-worked example (with annotations merged, hidden spans and people's
spans) and on the generated plant against the brute-force reference, read across a month copy,
a day file rewritten after the copy and single days, and the same through HTTP."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pyarrow as pa
import pytest
from psycopg import sql

from tagflow.annotations import AnnotationStore, ComputedSpan
from tagflow.annotations.state_database import database_on_server, dispose_state_engines
from tagflow.cli.runs import copy_months
from tagflow.io_managers import DatasetStore
from tagflow.readapi import Client
from tagflow.readapi.engine.config import ReadConfig
from tagflow.readapi.models import ANNOTATED_SPAN_LIST, SPAN_LIST, spans_from_table
from tagflow.readapi.server.app import create_app
from tagflow.readapi.server.keys import KeyStore
from tagflow.settings import Settings
from tests.conftest import drop_tenant
from tests.readapi.conftest import BackgroundServer, copy_days
from tests.readapi.expected import expected_spans
from tests.readapi.test_hand_examples import D1, D2, D3, load_hand_tenant, t

KEY = "spans-arrow-key"
NAN = float("nan")
MARCH = D1.date()
DAYS = [D1.date(), D2.date(), D3.date()]


def rows(table: pa.Table, *names: str) -> list[tuple]:
    """The table's `names` columns as row tuples, NaN as the string 'nan' (so rows compare)."""
    columns = [table.column(name).to_pylist() for name in names]
    return [
        tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in row)
        for row in zip(*columns, strict=True)
    ]


def _labels(text: str | None) -> dict | None:
    return None if text is None else json.loads(text)


# ---------------------------------------------------------------------------------------------
# The hand-worked example


@pytest.fixture(scope="module")
def hand_tenant(admin_conn: psycopg.Connection, pg_url: str, tmp_path_factory):
    """(tenant, store with 03-01 and 03-02 materialised, an empty store)."""
    tenant, root = load_hand_tenant(admin_conn, pg_url, tmp_path_factory, "arrow", KEY)
    yield tenant, root, tmp_path_factory.mktemp("arrow-empty")
    drop_tenant(admin_conn, tenant)


@pytest.fixture
def state_url(pg_url: str, admin_conn: psycopg.Connection) -> Iterator[str]:
    """An empty state database of the test's own."""
    name = f"state_{uuid.uuid4().hex[:12]}"
    yield database_on_server(pg_url, name)
    dispose_state_engines()
    admin_conn.execute(
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )


@pytest.mark.parametrize("where", ["materialised", "source only"])
def test_the_worked_example_as_columns(hand_tenant, pg_url, where):
    tenant, root, empty = hand_tenant
    store = root if where == "materialised" else empty
    with Client(store=store, tenant=tenant, source_url=pg_url) as client:
        table = client.get_spans_arrow("T", (D2, D3))
        assert table.schema.remove_metadata() == SPAN_LIST
        names = ("value_double", "begin_at", "end_at", "raw_begin_at", "raw_end_at")
        assert rows(table, *names) == [
            (30.0, t(D2, "01:45"), t(D2, "02:30"), t(D2, "01:45"), t(D2, "02:30")),
            ("nan", t(D2, "01:15"), t(D2, "01:45"), t(D2, "01:15"), t(D2, "01:45")),
            (20.0, t(D2, "00:30"), t(D2, "01:15"), t(D2, "00:30"), t(D2, "01:15")),
            (10.0, D2, t(D2, "00:30"), t(D1, "22:00"), t(D2, "00:30")),
        ]
        # The run crossing midnight, still open at the range end; a limit keeps the newest.
        crossing = client.get_spans_arrow("T", (t(D1, "23:00"), t(D2, "01:30")), limit=2)
        assert rows(crossing, "value_double", "end_at", "raw_end_at") == [
            ("nan", t(D2, "01:30"), None),
            (20.0, t(D2, "01:15"), t(D2, "01:15")),
        ]
        strings = client.get_spans_arrow("S", (D2, D3))
        assert rows(strings, "value_string", "value_double", "begin_at") == [
            ("A", None, t(D2, "01:00")),
            ("B", None, t(D2, "00:20")),
            ("A", None, D2),
        ]
        for name, window in [("T", (D1, D3)), ("C", (t(D1, "23:30"), t(D2, "01:45")))]:
            assert spans_from_table(client.get_spans_arrow(name, window)) == client.get_spans(
                name, window
            )


def test_annotations_are_merged_into_the_columns(hand_tenant, pg_url, state_url, tmp_path: Path):
    tenant, root, _ = hand_tenant
    config = ReadConfig(store=root, source_url=pg_url, state_url=state_url)
    local = Client(store=config, tenant=tenant)
    by_begin = {s.raw_begin_at: s for s in local.get_spans("T", (D2, D3))}
    moved, hidden = by_begin[t(D2, "00:30")], by_begin[t(D2, "01:45")]
    annotations = AnnotationStore.at(state_url)
    for span, changes in [
        (moved, {"begin_at": t(D2, "00:10"), "labels": {"k": "v"}}),
        (hidden, {"hidden": True, "note": "noise"}),
    ]:
        computed = ComputedSpan(span.tag_name, span.raw_begin_at, span.raw_end_at)
        annotations.update(tenant, span.id, revision=0, by="tester", computed=computed, **changes)
    mine = annotations.create(tenant, "T", t(D2, "05:00"), t(D2, "06:00"), by="ana")
    keys = KeyStore(tmp_path / "keys.json")
    keys.add(tenant, KEY)
    with (
        BackgroundServer(create_app(config, keys)) as server,
        Client(host=server.url, tenant=tenant, api_key=KEY) as remote,
    ):
        for include_hidden in (False, True):
            table = local.get_spans_arrow("T", (D2, D3), include_hidden=include_hidden)
            assert table.schema.remove_metadata() == ANNOTATED_SPAN_LIST
            names = ("id", "origin", "labels", "hidden", "begin_at", "computed_begin_at")
            want = [
                (mine.span_id, "user", {}, False, t(D2, "05:00"), None),
                *([(hidden.id, "computed", {}, True, hidden.begin_at, None)] * include_hidden),
                (by_begin[t(D2, "01:15")].id, None, None, None, t(D2, "01:15"), None),
                (moved.id, "computed", {"k": "v"}, False, t(D2, "00:10"), t(D2, "00:30")),
                (by_begin[t(D1, "22:00")].id, None, None, None, D2, None),
            ]
            got = [(*row[:2], _labels(row[2]), *row[3:]) for row in rows(table, *names)]
            assert got == want
            user = table.filter(pa.compute.equal(table.column("origin"), "user"))
            assert rows(user, "value_double", "value_string") == [(None, None)]
            records = local.get_spans("T", (D2, D3), include_hidden=include_hidden)
            assert spans_from_table(table) == records
            assert [s.metadata for s in spans_from_table(table)] == [s.metadata for s in records]
            over_http = remote.get_spans_arrow("T", (D2, D3), include_hidden=include_hidden)
            # Arrow's equality finds NaN unequal to itself (the NaN run): compared in pandas.
            assert over_http.schema.equals(table.schema, check_metadata=True)
            assert over_http.to_pandas().equals(table.to_pandas())


# ---------------------------------------------------------------------------------------------
# The generated plant: a month copy, a day file rewritten after it, single days


@pytest.fixture(scope="module")
def mixed_store(plant, pg_url, tmp_path_factory) -> Path:
    """The plant's days with March copied, then 03-03's spans rewritten (same rows, a new
    file): 03-01 and 03-02 are read from the copy, 03-03 from its own file."""
    root = tmp_path_factory.mktemp("arrow-mixed-store")
    instance = dg.DagsterInstance.ephemeral()
    settings = Settings(source_url=pg_url, store=str(root))
    for tenant in plant.tenants:
        copy_days(plant.root, root, tenant, DAYS)
        (run,) = copy_months(tenant, [MARCH], instance, settings)
        assert run.success
        store = DatasetStore(root)
        store.write("spans", tenant, DAYS[2], store.read("spans", tenant, DAYS[2]))
    return root


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """Where a test's spans were read from: 'copy', or the day of a day file."""
    seen: list[str] = []
    month_rows, tag_rows = DatasetStore.read_month_rows, DatasetStore.read_tag_rows

    def from_copy(self, dataset, *args, **kwargs):
        seen.append("copy")
        return month_rows(self, dataset, *args, **kwargs)

    def from_day(self, dataset, tenant, day, *args, **kwargs):
        if dataset == "spans":
            seen.append(day.isoformat())
        return tag_rows(self, dataset, tenant, day, *args, **kwargs)

    monkeypatch.setattr(DatasetStore, "read_month_rows", from_copy)
    monkeypatch.setattr(DatasetStore, "read_tag_rows", from_day)
    return seen


@pytest.mark.parametrize(
    ("window", "read_from"),
    [
        ((D1, D1 + timedelta(days=3)), {"copy", "2026-03-03"}),
        (
            (D1 + timedelta(hours=20, seconds=5.5), D1 + timedelta(days=2, hours=3, minutes=7)),
            {"copy", "2026-03-03"},
        ),
        ((D1 + timedelta(hours=6), D1 + timedelta(hours=18)), {"2026-03-01"}),
    ],
)
def test_columns_equal_the_reference_across_copy_and_day_files(
    plant, references, mixed_store, reads, window, read_from
):
    for tenant in plant.tenants:
        with Client(store=mixed_store, tenant=tenant, allow_source=False) as client:
            for tag in client.get_tags():
                table = client.get_spans_arrow(tag.name, window)
                want = expected_spans(references[tenant], tag.name, *window)
                assert spans_from_table(table) == want, tag.name
                assert spans_from_table(table) == client.get_spans(tag.name, window)
    assert set(reads) == read_from
