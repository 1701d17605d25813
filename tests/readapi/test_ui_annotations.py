"""The /ui page's span annotations (DESIGN §9, issue 23) in a real browser: Playwright drives
Debian's chromium against the read service with a real state database. With a write key, a
click on a span of the timeline opens its side panel (labels, note, revision, who changed it
last, history); the page labels it, corrects its begin, hides it (gone from the timeline unless
"show hidden") and adds a span of one's own from a range selected on the chart. A read key's
panel says the key may only read and sends no write; a revision changed behind the page's back
shows the conflict with the current record. No tag name or label ever travels in a URL path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from playwright.sync_api import Browser, Page, Request

from tagflow.demo.synthetic_plant import PlantSummary
from tagflow.io_managers import DatasetStore
from tagflow.readapi import Client, Span
from tagflow.readapi.server.app import create_app
from tagflow.readapi.server.keys import KeyStore
from tests.readapi import test_ui_page
from tests.readapi.conftest import BackgroundServer
from tests.readapi.test_ui_page import END, START, WAIT_MS, open_with_key, pick_tag
from tests.stores import materialise_from_source

# Debian's chromium, launched (or installed) as the page's own tests do.
browser = test_ui_page.browser


@dataclass(frozen=True)
class Service:
    url: str
    root: Path
    tenant: str
    write_key: str
    read_key: str
    string_tag: str

    def client(self, key: str | None = None) -> Client:
        return Client(host=self.url, api_key=key or self.write_key)


@pytest.fixture(scope="module")
def service(
    small_plant: PlantSummary, pg_url: str, state_url: str, tmp_path_factory
) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("ui-annotations-store")
    tenant = small_plant.tenants[0].tenant
    days = [date(2026, 3, 1) + timedelta(days=n) for n in range(3)]
    materialise_from_source(pg_url, root, tenant, days)
    tags = DatasetStore(root).read("tags", tenant).to_pylist()
    string = next(t["tag_name"] for t in tags if t["value_kind"] == "string")
    keys = KeyStore(root.parent / "ui-annotation-keys.json")
    write_key, _ = keys.add(tenant, write=True, label="alice")
    read_key, _ = keys.add(tenant, label="reader")
    app = create_app(root, keys, pg_url, state_url=state_url)
    with BackgroundServer(app) as server:
        yield Service(server.url, root, tenant, write_key, read_key, string)


# ---------------------------------------------------------------------- helpers


@dataclass
class Session:
    """A page opened on the string tag's timeline with a key, and what it requested."""

    page: Page
    requests: list[Request]
    errors: list[str]


def open_timeline(browser: Browser, service: Service, key: str) -> tuple[Session, object]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    session = Session(page, [], [])
    page.on("request", lambda request: session.requests.append(request))
    page.on("pageerror", lambda error: session.errors.append(str(error)))
    open_with_key(page, service.url, key)
    page.fill("#start", START.strftime("%Y-%m-%d %H:%M"))
    page.fill("#end", END.strftime("%Y-%m-%d %H:%M"))
    pick_tag(page, service.string_tag)
    return session, context


def ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def utc_text(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M")


def bars(page: Page) -> dict[str, tuple[str, int, int]]:
    """The timeline's bars by span id: (trace name, begin ms, end ms)."""
    return page.evaluate(
        """() => {
            const out = {};
            for (const t of document.getElementById('chart').data) {
                (t.customdata || []).forEach((id, i) => {
                    out[id] = [t.name, t.base[i], t.base[i] + t.x[i]];
                });
            }
            return out;
        }"""
    )


def chart_x(page: Page, at: datetime) -> tuple[float, float]:
    """The page coordinates of time `at` on the timeline's middle line."""
    return page.evaluate(
        """ms => {
            const chart = document.getElementById('chart');
            const layout = chart._fullLayout, box = chart.getBoundingClientRect();
            return [box.left + layout._size.l + layout.xaxis.l2p(ms),
                    box.top + layout._size.t + layout._size.h / 2];
        }""",
        ms(at),
    )


def click_span(page: Page, span: Span) -> None:
    page.mouse.click(*chart_x(page, span.begin_at + (span.end_at - span.begin_at) / 2))
    page.wait_for_selector("#panel:not([hidden])", timeout=WAIT_MS)
    page.wait_for_function(
        "() => document.getElementById('span-history').textContent !== ''", timeout=WAIT_MS
    )


def drag(page: Page, begin: datetime, end: datetime) -> None:
    x0, y = chart_x(page, begin)
    x1, _ = chart_x(page, end)
    page.mouse.move(x0, y)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, y, steps=5)
    page.mouse.move(x1, y, steps=5)
    page.mouse.up()


def redrawn(page: Page, before: str) -> None:
    page.wait_for_function(
        "before => document.getElementById('chart').dataset.shown !== before",
        arg=before,
        timeout=WAIT_MS,
    )


def shown_token(page: Page) -> str:
    return page.evaluate("() => document.getElementById('chart').dataset.shown || ''")


def wait_status(page: Page, selector: str, text: str) -> None:
    page.wait_for_function(
        "([sel, text]) => document.querySelector(sel).textContent.includes(text)",
        arg=[selector, text],
        timeout=WAIT_MS,
    )


def assert_no_name_in_a_path(session: Session, *secrets: str) -> None:
    """No tag name or label in any URL path (or anywhere in a URL)."""
    assert session.requests
    for request in session.requests:
        url = unquote(request.url)
        path = unquote(urlparse(request.url).path)
        for secret in secrets:
            assert secret not in path and secret not in url, (secret, request.url)


def writes(session: Session) -> list[tuple[str, dict]]:
    """The annotation writes the page sent: (method and path, JSON body)."""
    return [
        (f"{r.method} {urlparse(r.url).path}", json.loads(r.post_data or "null"))
        for r in session.requests
        if "/v1/annotations" in r.url and r.method in ("PATCH", "POST")
    ]


def ended_spans(service: Service) -> list[Span]:
    """Long computed spans of the string tag inside the range, longest first."""
    with service.client() as client:
        spans = client.get_spans(service.string_tag, (START, END))
    inside = [
        s
        for s in spans
        if s.raw_end_at is not None
        and s.raw_begin_at >= START
        and s.raw_end_at <= END
        and not s.metadata
    ]
    return sorted(inside, key=lambda s: s.end_at - s.begin_at, reverse=True)


def state_of(service: Service, span_id: int, include_hidden: bool = True) -> Span | None:
    with service.client() as client:
        spans = client.get_spans(service.string_tag, (START, END), include_hidden=include_hidden)
    return next((s for s in spans if s.id == span_id), None)


# ---------------------------------------------------------------------- tests


def test_write_key_labels_corrects_and_hides_a_clicked_span(service, browser):
    span = ended_spans(service)[0]
    session, context = open_timeline(browser, service, service.write_key)
    page = session.page
    try:
        click_span(page, span)
        assert page.text_content('#span-facts dd[data-fact="revision"]') == "0"
        assert page.is_hidden("#panel-readonly")
        assert page.is_enabled("#span-save")
        # Label it and move its begin ten minutes later.
        corrected = minute(span.begin_at) + timedelta(minutes=10)
        page.fill("#span-labels", "kind=baseline\ncause=calm")
        page.fill("#span-begin", utc_text(corrected))
        before = shown_token(page)
        page.click("#span-save")
        wait_status(page, "#panel-status", "saved: revision 1")
        redrawn(page, before)

        state = state_of(service, span.id)
        assert state is not None and state.metadata is not None
        assert state.metadata["labels"] == {"kind": "baseline", "cause": "calm"}
        assert state.metadata["revision"] == 1
        assert state.metadata["updated_by"] == "alice"
        assert state.begin_at == corrected
        # The timeline draws the corrected bounds; the panel shows the new record.
        name, begin, end = bars(page)[str(span.id)]
        assert (begin, end) == (ms(corrected), ms(span.end_at))
        assert page.text_content('#span-facts dd[data-fact="revision"]') == "1"
        assert "by alice" in page.text_content('#span-facts dd[data-fact="last changed"]')
        history = page.text_content("#span-history")
        assert "revision 1 by alice" in history and "labels" in history

        # Back to the computed bounds, then corrected again.
        assert page.is_visible("#span-computed")
        before = shown_token(page)
        page.click("#span-computed")
        wait_status(page, "#panel-status", "saved: revision 2")
        redrawn(page, before)
        assert state_of(service, span.id).begin_at == span.begin_at
        assert bars(page)[str(span.id)][1:] == [ms(span.begin_at), ms(span.end_at)]
        assert page.is_hidden("#span-computed")
        page.fill("#span-begin", utc_text(corrected))
        before = shown_token(page)
        page.click("#span-save")
        wait_status(page, "#panel-status", "saved: revision 3")
        redrawn(page, before)

        # Hide it: gone from the timeline unless "show hidden".
        before = shown_token(page)
        page.click("#span-hide")
        wait_status(page, "#panel-status", "saved: revision 4")
        redrawn(page, before)
        assert str(span.id) not in bars(page)
        assert state_of(service, span.id, include_hidden=False) is None
        hidden = state_of(service, span.id)
        assert hidden is not None and hidden.metadata["hidden"] is True
        before = shown_token(page)
        page.check("#show-hidden")
        redrawn(page, before)
        name, begin, _ = bars(page)[str(span.id)]
        assert name.startswith("hidden") and begin == ms(corrected)
        assert page.text_content("#span-hide") == "Unhide"
        assert [body["revision"] for _, body in writes(session) if body] == [0, 1, 2, 3]
    finally:
        context.close()
    assert session.errors == []
    assert_no_name_in_a_path(session, service.string_tag, "baseline", "calm", "cause")
    paths = {path for path, body in writes(session) if body}
    assert paths == {f"PATCH /v1/annotations/spans/{span.id}"}


def test_a_range_selected_on_the_timeline_becomes_a_span_of_ones_own(service, browser):
    session, context = open_timeline(browser, service, service.write_key)
    page = session.page
    begin, end = START + timedelta(hours=30), START + timedelta(hours=33)
    try:
        drag(page, begin, end)
        page.wait_for_selector("#new-span:not([hidden])", timeout=WAIT_MS)
        shown_begin, shown_end = page.input_value("#new-begin"), page.input_value("#new-end")
        chosen = [datetime.fromisoformat(f"{t}:00+00:00") for t in (shown_begin, shown_end)]
        assert abs(chosen[0] - begin) < timedelta(minutes=30)
        assert abs(chosen[1] - end) < timedelta(minutes=30)
        page.fill("#new-labels", "kind=maintenance")
        page.fill("#new-note", "pump swap")
        before = shown_token(page)
        page.click("#new-add")
        wait_status(page, "#panel-status", "added")
        redrawn(page, before)
        with service.client() as client:
            spans = client.get_spans(service.string_tag, (START, END))
        mine = [s for s in spans if s.metadata and s.metadata.get("origin") == "user"]
        assert [(s.begin_at, s.end_at) for s in mine] == [tuple(chosen)]
        assert mine[0].metadata["labels"] == {"kind": "maintenance"}
        assert mine[0].metadata["note"] == "pump swap"
        assert mine[0].metadata["revision"] == 1
        _, drawn_begin, drawn_end = bars(page)[str(mine[0].id)]
        assert (drawn_begin, drawn_end) == (ms(chosen[0]), ms(chosen[1]))
    finally:
        context.close()
    assert session.errors == []
    assert_no_name_in_a_path(session, service.string_tag, "maintenance", "pump swap")
    posts = [(path, body) for path, body in writes(session) if path.startswith("POST")]
    assert [body["tag_name"] for _, body in posts] == [service.string_tag]


def test_a_read_key_sees_read_only_controls_and_sends_no_write(service, browser):
    span = ended_spans(service)[1]
    session, context = open_timeline(browser, service, service.read_key)
    page = session.page
    try:
        click_span(page, span)
        page.wait_for_selector("#panel-readonly:not([hidden])", timeout=WAIT_MS)
        assert "may only read" in page.text_content("#panel-readonly")
        for control in ("#span-save", "#span-hide", "#span-labels", "#span-begin"):
            assert page.is_disabled(control)
        page.click("#panel-close")
        drag(page, START + timedelta(hours=5), START + timedelta(hours=6))
        page.wait_for_selector("#new-readonly:not([hidden])", timeout=WAIT_MS)
        assert page.is_disabled("#new-add")
    finally:
        context.close()
    assert session.errors == []
    # The page asked what the key may do, and sent nothing that could change a span.
    assert writes(session) == []
    assert any(urlparse(r.url).path == "/v1/annotations/access" for r in session.requests)
    assert state_of(service, span.id).metadata is None
    assert_no_name_in_a_path(session, service.string_tag)


def test_a_stale_revision_shows_the_conflict_and_the_change_is_reapplied(service, browser):
    span = ended_spans(service)[2]
    session, context = open_timeline(browser, service, service.write_key)
    page = session.page
    try:
        click_span(page, span)
        # Someone else writes behind the page's back.
        with service.client() as client:
            client.update_span(span, revision=0, note="changed elsewhere")
        page.fill("#span-labels", "kind=mine")
        page.click("#span-save")
        page.wait_for_selector("#conflict:not([hidden])", timeout=WAIT_MS)
        record = page.text_content("#conflict-record")
        assert "revision 1 by alice" in record and "changed elsewhere" in record
        assert "press Save again to reapply" in page.text_content("#panel-status")
        assert page.input_value("#span-labels") == "kind=mine"  # what was typed is kept
        assert state_of(service, span.id).metadata["labels"] == {}
        # Reapplied from the current revision.
        page.click("#span-save")
        wait_status(page, "#panel-status", "saved: revision 2")
        state = state_of(service, span.id)
        assert state.metadata["labels"] == {"kind": "mine"}
        assert state.metadata["note"] == "changed elsewhere"
    finally:
        context.close()
    assert session.errors == []
    revisions = [body["revision"] for _, body in writes(session) if body]
    assert revisions == [0, 1]
    assert_no_name_in_a_path(session, service.string_tag, "kind=mine")
