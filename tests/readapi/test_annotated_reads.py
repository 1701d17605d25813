"""Reads merge the span annotations (DESIGN §9): hand-worked examples of every rule on the worked
example's tag T (tests/readapi/test_hand_examples.py), from materialised days and from the
source alike, the store transport against HTTP, and a state database that stops."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from tagflow.annotations import AnnotationStore, ComputedSpan
from tagflow.annotations.state_database import database_on_server, dispose_state_engines
from tagflow.readapi import Client, Span
from tagflow.readapi.engine.config import ReadConfig
from tagflow.readapi.errors import AnnotationsUnavailable
from tagflow.readapi.server.app import create_app
from tagflow.readapi.server.keys import KeyStore
from tagflow.source.embedded import embedded_server_url, stop_embedded_server
from tests.conftest import drop_tenant, state_database
from tests.readapi.conftest import BackgroundServer
from tests.readapi.test_hand_examples import D1, D2, D3, load_hand_tenant, t

KEY = "annotated-reads-key"


@pytest.fixture(scope="module")
def hand_tenant(admin_conn: psycopg.Connection, pg_url: str, tmp_path_factory):
    """(tenant, store with 03-01 and 03-02 materialised, an empty store)."""
    tenant, root = load_hand_tenant(admin_conn, pg_url, tmp_path_factory, "annot", KEY)
    yield tenant, root, tmp_path_factory.mktemp("annotated-empty")
    drop_tenant(admin_conn, tenant)


@pytest.fixture
def state_url(pg_url: str, admin_conn: psycopg.Connection) -> Iterator[str]:
    """An empty state database of the test's own."""
    with state_database(pg_url, admin_conn) as url:
        yield url


@pytest.fixture(params=["materialised", "source only"])
def client(request, hand_tenant, pg_url: str, state_url: str) -> Iterator[Client]:
    tenant, root, empty = hand_tenant
    store = root if request.param == "materialised" else empty
    config = ReadConfig(store=store, source_url=pg_url, state_url=state_url)
    with Client(store=config, tenant=tenant) as client:
        yield client


@pytest.fixture
def annotations(state_url: str) -> AnnotationStore:
    return AnnotationStore.at(state_url)


def annotate(store: AnnotationStore, client: Client, span: Span, **changes: object) -> None:
    """A first change of a computed span, by 'tester'."""
    computed = ComputedSpan(span.tag_name, span.raw_begin_at, span.raw_end_at)
    assert client.tenant is not None
    store.update(client.tenant, span.id, revision=0, by="tester", computed=computed, **changes)


def day_spans(client: Client) -> dict[str, Span]:
    """T's spans of 03-02 by their run's begin: A (10), B (20), C (NaN), D (30)."""
    spans = client.get_spans("T", (D2, D3))
    by_begin = {span.raw_begin_at: span for span in spans}
    return {
        "A": by_begin[t(D1, "22:00")],
        "B": by_begin[t(D2, "00:30")],
        "C": by_begin[t(D2, "01:15")],
        "D": by_begin[t(D2, "01:45")],
    }


def bounds(spans: list[Span]) -> list[tuple[datetime, datetime, datetime, datetime | None]]:
    return [(s.begin_at, s.end_at, s.raw_begin_at, s.raw_end_at) for s in spans]


def test_unannotated_spans_keep_no_metadata(client):
    spans = client.get_spans("T", (D2, D3))
    assert len(spans) == 4 and all(span.metadata is None for span in spans)
    assert spans.annotations_unavailable is False


def test_corrected_begin_moves_a_span_into_the_window(client, annotations):
    spans = day_spans(client)
    window = (D2, t(D2, "00:20"))
    assert [s.id for s in client.get_spans("T", window)] == [spans["A"].id]
    annotate(annotations, client, spans["B"], begin_at=t(D2, "00:10"), labels={"k": "v"})
    got = client.get_spans("T", window)
    # Newest first by the corrected begin; clipped to the window by the corrected bounds.
    assert [s.id for s in got] == [spans["B"].id, spans["A"].id]
    assert bounds(got)[0] == (t(D2, "00:10"), t(D2, "00:20"), t(D2, "00:30"), None)
    metadata = got[0].metadata
    assert metadata is not None
    assert metadata["labels"] == {"k": "v"} and metadata["revision"] == 1
    assert metadata["origin"] == "computed" and metadata["hidden"] is False
    assert metadata["computed_begin_at"] == t(D2, "00:30")
    assert metadata["updated_by"] == "tester"
    assert got[1].metadata is None


def test_corrected_end_moves_a_span_out_of_the_window(client, annotations):
    spans = day_spans(client)
    window = (t(D2, "01:20"), t(D2, "01:45"))
    assert [s.id for s in client.get_spans("T", window)] == [spans["C"].id]
    annotate(annotations, client, spans["C"], end_at=t(D2, "01:18"))
    assert client.get_spans("T", window) == []
    # Its whole day shows it with the corrected end and the computed run's raw bounds.
    moved = next(s for s in client.get_spans("T", (D2, D3)) if s.id == spans["C"].id)
    assert bounds([moved]) == [(t(D2, "01:15"), t(D2, "01:18"), t(D2, "01:15"), t(D2, "01:45"))]
    assert moved.metadata is not None
    assert moved.metadata["computed_end_at"] == t(D2, "01:45")


def test_corrected_end_moves_a_span_into_the_window(client, annotations):
    spans = day_spans(client)
    window = (t(D2, "02:40"), t(D2, "04:00"))
    assert client.get_spans("T", window) == []
    annotate(annotations, client, spans["D"], end_at=t(D2, "03:00"))
    got = client.get_spans("T", window)
    assert bounds(got) == [(t(D2, "02:40"), t(D2, "03:00"), t(D2, "01:45"), t(D2, "02:30"))]
    assert got[0].value == 30.0


def test_order_is_by_corrected_begin(client, annotations):
    spans = day_spans(client)
    annotate(annotations, client, spans["C"], begin_at=t(D2, "00:20"))
    got = client.get_spans("T", (D2, D3))
    assert [s.id for s in got] == [spans[k].id for k in "DBCA"]
    assert got[2].begin_at == t(D2, "00:20") and got[3].begin_at == D2


def test_limit_keeps_the_newest_by_corrected_begin(client, annotations):
    spans = day_spans(client)
    annotate(annotations, client, spans["A"], begin_at=t(D2, "03:00"), end_at=t(D2, "04:00"))
    assert [s.id for s in client.get_spans("T", (D2, D3), limit=1)] == [spans["A"].id]


def test_hidden_spans_only_when_asked(client, annotations):
    spans = day_spans(client)
    annotate(annotations, client, spans["B"], hidden=True)
    assert [s.id for s in client.get_spans("T", (D2, D3))] == [spans[k].id for k in "DCA"]
    shown = client.get_spans("T", (D2, D3), include_hidden=True)
    assert [s.id for s in shown] == [spans[k].id for k in "DCBA"]
    assert shown[2].metadata is not None and shown[2].metadata["hidden"] is True
    # Hiding alone corrects no bound.
    assert "computed_begin_at" not in shown[2].metadata


def test_a_persons_span_is_among_its_tags_spans(client, annotations):
    assert client.tenant is not None
    record = annotations.create(
        client.tenant, "T", t(D2, "03:00"), t(D2, "04:00"), by="ana", note="valve test"
    )
    got = client.get_spans("T", (t(D2, "02:00"), t(D2, "03:30")))
    assert [s.id for s in got] == [record.span_id, day_spans(client)["D"].id]
    mine = got[0]
    assert mine.value is None and mine.tag_name == "T"
    assert bounds([mine]) == [(t(D2, "03:00"), t(D2, "03:30"), t(D2, "03:00"), t(D2, "04:00"))]
    assert mine.metadata is not None
    assert mine.metadata["origin"] == "user" and mine.metadata["note"] == "valve test"
    # Not among another tag's spans.
    assert all(s.id != record.span_id for s in client.get_spans("C", (D2, D3)))


def test_a_correction_brings_a_span_of_another_day_into_the_read(client, annotations):
    spans = day_spans(client)
    window = (t(D1, "23:00"), D2)
    assert [s.id for s in client.get_spans("T", window)] == [spans["A"].id]
    annotate(annotations, client, spans["D"], begin_at=t(D1, "23:30"))
    got = client.get_spans("T", window)
    assert [s.id for s in got] == [spans["D"].id, spans["A"].id]
    assert bounds(got)[0] == (t(D1, "23:30"), D2, t(D2, "01:45"), None)
    assert got[0].value == 30.0


def test_span_annotations_and_detached_ones(client, annotations):
    assert client.tenant is not None
    spans = day_spans(client)
    annotate(annotations, client, spans["B"], labels={"run": "7"})
    # An annotation of a span no longer computed: its id is none of the day's.
    lost = ComputedSpan("T", t(D2, "00:40"), t(D2, "01:10"))
    annotations.update(
        client.tenant, 123456789, revision=0, by="tester", computed=lost, note="gone"
    )
    listed = client.get_span_annotations((D2, D3))
    assert [s.id for s in listed] == [123456789, spans["B"].id]
    assert listed[1].metadata is not None and listed[1].metadata["labels"] == {"run": "7"}
    detached = client.get_span_annotations((D2, D3), detached=True)
    assert [s.id for s in detached] == [123456789]
    assert bounds(detached) == [(t(D2, "00:40"), t(D2, "01:10"), t(D2, "00:40"), t(D2, "01:10"))]
    assert client.get_span_annotations(detached=True) == detached
    # A detached annotation is not a span of get_spans.
    assert all(s.id != 123456789 for s in client.get_spans("T", (D2, D3)))


def test_the_source_fallback_merges_like_a_materialised_day(
    hand_tenant, pg_url: str, state_url: str, annotations
):
    tenant, root, empty = hand_tenant
    clients = [
        Client(store=ReadConfig(store=s, source_url=pg_url, state_url=state_url), tenant=tenant)
        for s in (root, empty)
    ]
    spans = day_spans(clients[0])
    annotate(annotations, clients[0], spans["C"], begin_at=t(D2, "00:20"), labels={"a": "b"})
    annotate(annotations, clients[0], spans["B"], hidden=True)
    annotations.create(tenant, "T", t(D2, "05:00"), t(D2, "06:00"), by="ana")
    for window in [(D2, D3), (t(D2, "00:25"), t(D2, "05:30")), (t(D1, "12:00"), D3)]:
        for hidden in (False, True):
            stored, computed = (c.get_spans("T", window, include_hidden=hidden) for c in clients)
            assert stored == computed and len(stored) > 0


def test_store_and_http_give_equal_answers(
    hand_tenant, pg_url: str, state_url: str, annotations, tmp_path: Path
):
    tenant, root, _ = hand_tenant
    config = ReadConfig(store=root, source_url=pg_url, state_url=state_url)
    keys = KeyStore(tmp_path / "keys.json")
    keys.add(tenant, KEY)
    local = Client(store=config, tenant=tenant)
    spans = day_spans(local)
    annotate(annotations, local, spans["C"], begin_at=t(D2, "00:20"), note="moved")
    annotate(annotations, local, spans["D"], hidden=True, labels={"x": "1"})
    annotations.update(
        tenant,
        987654321,
        revision=0,
        by="tester",
        computed=ComputedSpan("T", t(D2, "00:40"), t(D2, "01:10")),
        labels={"lost": "yes"},
    )
    annotations.create(tenant, "T", t(D2, "05:00"), t(D2, "06:00"), by="ana")
    with (
        BackgroundServer(create_app(config, keys)) as server,
        Client(host=server.url, tenant=tenant, api_key=KEY) as remote,
    ):
        for window in [(D2, D3), (t(D2, "00:25"), t(D2, "05:30"))]:
            for hidden in (False, True):
                assert remote.get_spans("T", window, include_hidden=hidden) == local.get_spans(
                    "T", window, include_hidden=hidden
                )
            for detached in (False, True):
                assert remote.get_span_annotations(
                    window, detached=detached
                ) == local.get_span_annotations(window, detached=detached)
        assert len(remote.get_span_annotations(detached=True)) == 1


def test_state_database_down_answers_computed_spans_and_says_so(
    hand_tenant, pg_url: str, tmp_path: Path, server_dir: Path
):
    tenant, root, _ = hand_tenant
    data_dir = server_dir
    url = database_on_server(embedded_server_url(data_dir, keep_running=True), "tagflow_state")
    try:
        config = ReadConfig(store=root, source_url=pg_url, state_url=url)
        keys = KeyStore(tmp_path / "keys.json")
        keys.add(tenant, KEY)
        local = Client(store=config, tenant=tenant)
        spans = day_spans(local)
        annotate(AnnotationStore.at(url), local, spans["B"], hidden=True)
        assert len(local.get_spans("T", (D2, D3))) == 3
        with (
            BackgroundServer(create_app(config, keys)) as server,
            Client(host=server.url, tenant=tenant, api_key=KEY) as remote,
        ):
            stop_embedded_server(data_dir)
            for client in (local, remote):
                with pytest.warns(AnnotationsUnavailable, match="could not be read"):
                    answer = client.get_spans("T", (D2, D3))
                assert answer.annotations_unavailable is True
                # The computed spans, all of them (the hidden one too: its annotation is unknown).
                assert [s.id for s in answer] == [spans[k].id for k in "DCBA"]
                assert all(s.metadata is None for s in answer)
            response = httpx.get(
                f"{server.url}/v1/spans/T",
                params={"start": D2.isoformat(), "end": D3.isoformat()},
                headers={"Authorization": f"Bearer {KEY}"},
            )
            assert response.status_code == 200
            assert response.headers["X-Tagflow-Annotations"] == "unavailable"
    finally:
        dispose_state_engines()
        stop_embedded_server(data_dir)
