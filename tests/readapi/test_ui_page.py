"""The /ui page in a real browser: Playwright drives Debian's chromium against the read service
over a small materialised store. With a tenant's key, the page searches and picks a numeric tag
and charts one twa point per bucket of the width the range calls for (the client's
sample_metric_data answer, point for point), then picks a string tag and draws its spans, whose
hover text shows their raw bounds. Everything the page loads comes from the service itself,
and the key never reaches a URL. Tags named with `..`, `.`, `%2e`, `/` and `?` show exactly
their own data: no tag name travels in a URL path, which the browser would normalise.

A demo that looks right: the page opens on the tenant's latest materialised day (from
`GET /v1/coverage`, tested over HTTP too), shows and reads its times as UTC 24-hour text in a
browser set to Los Angeles and AM/PM, draws FAULT red and RUNNING green or blue, and marks a
value carried forward to the end of the range.

Chromium is Debian's package (`apt-get install chromium`). When it
is missing the test installs it where it can (root with apt-get); it skips, saying why, only
when that is impossible."""

from __future__ import annotations

import colorsys
import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, Page, Request, sync_playwright

from tagflow.demo.synthetic_plant import PlantSummary
from tagflow.io_managers import DatasetStore
from tagflow.readapi import Client
from tagflow.readapi.server.app import create_app
from tagflow.readapi.server.keys import KeyStore
from tagflow.readapi.server.ui import plotly_js
from tagflow.schemas.source_ddl import create_tenant
from tests.conftest import copy_rows, drop_tenant, unique_tenant_name
from tests.readapi.conftest import BackgroundServer
from tests.stores import materialise_from_source

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that would reach beyond the machine (plants are air-gapped; so is CI).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
INSTALL_TIMEOUT_S = 900
WAIT_MS = 15_000
# Two days: the page picks 15-minute buckets for ranges over one day, up to a week.
START = datetime(2026, 3, 1, tzinfo=UTC)
END = START + timedelta(days=2)
WIDTH = "15m"


def chromium() -> Path:
    """Debian's chromium, installed with apt-get when it is missing and this process may."""
    if CHROMIUM.exists():
        return CHROMIUM
    apt_get = shutil.which("apt-get")
    if apt_get is None or os.geteuid() != 0:
        pytest.skip(
            f"{CHROMIUM} is missing and cannot be installed here (needs root and apt-get): "
            "install Debian's chromium (`sudo apt-get install chromium`) to run the browser test"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in ([apt_get, "update", "-q"], [apt_get, "install", "-y", "-q", "chromium"]):
        try:
            done = subprocess.run(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            pytest.skip(f"`{' '.join(command[1:])}` for chromium ran over {INSTALL_TIMEOUT_S} s")
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            pytest.skip(f"chromium could not be installed with apt-get: {tail}")
    if not CHROMIUM.exists():
        pytest.skip(f"apt-get installed chromium, but {CHROMIUM} is still missing")
    return CHROMIUM


@dataclass(frozen=True)
class Service:
    """The read service over one materialised tenant, and the tenant's numeric and string tags;
    with the key of a second tenant, of which nothing is materialised."""

    url: str
    root: Path
    tenant: str
    key: str
    numeric_tag: str
    string_tag: str
    other_tenant: str
    other_key: str

    def client(self) -> Client:
        return Client(host=self.url, tenant=self.tenant, api_key=self.key)


@pytest.fixture(scope="module")
def service(
    small_plant: PlantSummary, pg_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("ui-store")
    tenant = small_plant.tenants[0].tenant
    days = [date(2026, 3, 1) + timedelta(days=n) for n in range(3)]
    materialise_from_source(pg_url, root, tenant, days)
    tags = DatasetStore(root).read("tags", tenant).to_pylist()
    numeric = next(t["tag_name"] for t in tags if "analog" in t["tag_name"])
    string = next(t["tag_name"] for t in tags if t["value_kind"] == "string")
    other = small_plant.tenants[1].tenant
    keys = KeyStore(root.parent / "ui-keys.json")
    for name in (tenant, other):
        keys.add(name, small_plant.api_keys[name])
    with BackgroundServer(create_app(root, keys.path, pg_url)) as server:
        yield Service(
            server.url,
            root,
            tenant,
            small_plant.api_keys[tenant],
            numeric,
            string,
            other,
            small_plant.api_keys[other],
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def pick_tag(page: Page, name: str) -> None:
    """Search for `name` and pick it from the list; wait until its chart is drawn."""
    page.fill("#search", name.rsplit("/", 1)[-1])
    page.click(f'#tag-list button[data-tag="{name}"]')
    page.wait_for_function(
        "name => document.getElementById('chart').dataset.tag === name", arg=name, timeout=WAIT_MS
    )


def trace(page: Page, name: str) -> dict:
    """The x and y of the chart's trace called `name`."""
    return page.evaluate(
        """name => {
            const found = document.getElementById('chart').data.find(t => t.name === name);
            return {x: Array.from(found.x), y: Array.from(found.y)};
        }""",
        name,
    )


def hover_text_at(page: Page, at: datetime) -> str:
    """Move the mouse onto the timeline at time `at` and read the hover label Plotly shows."""
    x, y = page.evaluate(
        """ms => {
            const chart = document.getElementById('chart');
            const layout = chart._fullLayout, box = chart.getBoundingClientRect();
            return [box.left + layout._size.l + layout.xaxis.l2p(ms),
                    box.top + layout._size.t + layout._size.h / 2];
        }""",
        at.timestamp() * 1000,
    )
    page.mouse.move(x, y)
    label = page.wait_for_selector(".hoverlayer .hovertext", timeout=WAIT_MS)
    return label.text_content() or ""


def test_page_charts_a_numeric_tag_per_bucket_and_shows_raw_bounds_of_spans(service, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requests: list[Request] = []
    problems: list[str] = []
    page.on("request", lambda request: requests.append(request))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"{service.url}/ui")
        page.fill("#key", "tf_not_a_key")
        page.click("#key-form button[type=submit]")
        page.wait_for_selector("#key-error:has-text('refused')", timeout=WAIT_MS)
        page.fill("#key", service.key)
        page.click("#key-form button[type=submit]")
        page.wait_for_selector("#tag-list button", timeout=WAIT_MS)
        page.fill("#start", START.strftime("%Y-%m-%d %H:%M"))
        page.fill("#end", END.strftime("%Y-%m-%d %H:%M"))

        # A numeric tag: twa with its min/max band, one point per 15-minute bucket.
        tag = service.numeric_tag
        pick_tag(page, tag)
        expected = service.client().sample_metric_data(
            WIDTH, tag_names=tag, time_range=(START, END)
        )
        assert len(expected) == (END - START) // timedelta(minutes=15)
        twa = trace(page, "twa")
        assert len(twa["x"]) == len(twa["y"]) == len(expected)
        assert [datetime.fromisoformat(x) for x in twa["x"]] == list(expected["time"])
        for shown, answered in zip(twa["y"], expected[tag], strict=True):
            assert (shown is None) if math.isnan(answered) else shown == answered
        # The band: each bucket's min and max, wherever the tag held a number.
        low, high = (
            service.client().sample_metric_data(
                WIDTH, aggregate_function=aggregate, tag_names=tag, time_range=(START, END)
            )[tag]
            for aggregate in ("min", "max")
        )
        band = trace(page, "min–max")
        assert sorted(
            (datetime.fromisoformat(x), y) for x, y in zip(band["x"], band["y"], strict=True) if x
        ) == sorted(
            (time.to_pydatetime(), value)
            for time, lo, hi in zip(expected["time"], low, high, strict=True)
            if not (math.isnan(lo) or math.isnan(hi))
            for value in (lo, hi)
        )
        assert f"buckets of {WIDTH}" in page.text_content("#status")

        # A string tag: its spans as a timeline; the hover text of one shows its raw bounds.
        pick_tag(page, service.string_tag)
        spans = service.client().get_spans(service.string_tag, (START, END))
        span = max(spans, key=lambda s: s.end_at - s.begin_at)
        text = hover_text_at(page, span.begin_at + (span.end_at - span.begin_at) / 2)
        assert f"raw_begin_at {span.raw_begin_at.isoformat()}" in text
        raw_end = span.raw_end_at.isoformat() if span.raw_end_at else "none"
        assert f"raw_end_at {raw_end}" in text
    finally:
        context.close()

    # No script error and no load refused by the page's policy: only the wrong key's 401.
    assert problems == [
        "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    ]
    assert all(r.url.startswith(f"{service.url}/") for r in requests)  # nothing from elsewhere
    assert service.key not in page.url
    reads = [r for r in requests if "/v1/" in r.url]
    assert reads and all(service.key not in r.url for r in requests)
    # The refused key's one call, then every read with the tenant's key, in its header only.
    assert reads[0].headers.get("authorization") == "Bearer tf_not_a_key"
    assert all(r.headers.get("authorization") == f"Bearer {service.key}" for r in reads[1:])


def test_page_loads_only_what_the_service_serves(tmp_path: Path):
    """The page, its script and style and plotly.js come from the service (no CDN), with a
    policy that lets the page load nothing from elsewhere; nothing else is served under /ui."""
    app = create_app(tmp_path / "store", tmp_path / "keys.json")
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url) as http:
        page = http.get("/ui")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self';" in policy
        assert "http" not in page.text.replace('xmlns="http', "")  # no address of another host
        for name, kind in [("ui.js", "text/javascript"), ("ui.css", "text/css")]:
            answer = http.get(f"/ui/static/{name}")
            assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind)
            assert f'/ui/static/{name}"' in page.text
        plotly = http.get("/ui/static/plotly.min.js")
        assert plotly.status_code == 200 and plotly.content == plotly_js().read_bytes()
        assert '/ui/static/plotly.min.js"' in page.text
        for name in ["index.html", "ui.py", "..%2Fui.py", "..%2F..%2Fapp.py", "plotly.js"]:
            missing = http.get(f"/ui/static/{name}")
            assert missing.status_code == 404 and missing.json()["error"] == "not_found"


# Tags whose names a browser would rewrite in a URL path ('..' and '.' segments, even spelled
# %2e), or that hold '/', '%' or '?'; each with its own values, beside the victims that a
# normalised path would reach instead ("evil/../str/state" → "str/state", "a/./b" → "a/b").
# Every string tag's values start with its own prefix, so a value shown under a name proves
# whose data it is.
ODD_STRING_TAGS = {
    "str/state": "victim",
    "evil/../str/state": "evil",
    "a/b": "ab",
    "a/./b": "dot",
    "x%2e%2e/y": "pct",
    "q?x=1": "query",
    "./..": "dots",
}
# Numeric: the victim holds 100 + k, the other -50 - k.
ODD_NUMERIC_TAGS = {"num": 100.0, "evil/../num": -50.0}
ODD_ROWS_PER_TAG = 4
ODD_BORN = datetime(2026, 1, 1, tzinfo=UTC)


def odd_rows(index: int) -> list[datetime]:
    """The times of the rows of the tag at `index`: whole hours, a different pattern per tag."""
    return [START + timedelta(hours=1 + index + 7 * k) for k in range(ODD_ROWS_PER_TAG)]


@dataclass(frozen=True)
class OddService:
    """The read service over a tenant of the odd names above, with a client of it."""

    url: str
    key: str
    client: Client


@pytest.fixture(scope="module")
def odd_names_service(
    pg_url: str, admin_conn: psycopg.Connection, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OddService]:
    root = tmp_path_factory.mktemp("ui-odd-store")
    tenant = unique_tenant_name("odd")
    keys = KeyStore(root.parent / "ui-odd-keys.json")
    key, _ = keys.add(tenant)
    create_tenant(admin_conn, tenant, key)
    names = [*ODD_STRING_TAGS, *ODD_NUMERIC_TAGS]
    tags = [(i + 1, name, ODD_BORN, None) for i, name in enumerate(names)]
    strings = [
        (i + 1, at, f"{prefix}-{k % 2}")
        for i, prefix in enumerate(ODD_STRING_TAGS.values())
        for k, at in enumerate(odd_rows(i))
    ]
    numeric = [
        (i + 1, at, base + k if base > 0 else base - k)
        for i, base in enumerate(ODD_NUMERIC_TAGS.values(), start=len(ODD_STRING_TAGS))
        for k, at in enumerate(odd_rows(i))
    ]
    try:
        copy_rows(admin_conn, tenant, tags, numeric, strings)
        materialise_from_source(pg_url, root, tenant, [START.date(), START.date() + timedelta(1)])
        with BackgroundServer(create_app(root, keys.path, pg_url)) as server:
            yield OddService(server.url, key, Client(host=server.url, tenant=tenant, api_key=key))
    finally:
        drop_tenant(admin_conn, tenant)


def chart_spans(page: Page) -> dict[str, list[tuple[int, int]]]:
    """The spans timeline drawn: per value label, (begin, end) in ms since the epoch."""
    return page.evaluate(
        """() => Object.fromEntries(document.getElementById('chart').data.map(t =>
            [t.name, Array.from(t.base, (begin, i) => [begin, begin + t.x[i]])]))"""
    )


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def test_page_shows_each_odd_tag_name_its_own_data_and_sends_no_name_in_a_url_path(
    odd_names_service, browser
):
    service = odd_names_service
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    try:
        page.goto(f"{service.url}/ui")
        page.fill("#key", service.key)
        page.click("#key-form button[type=submit]")
        page.wait_for_selector("#tag-list button", timeout=WAIT_MS)
        page.fill("#start", START.strftime("%Y-%m-%d %H:%M"))
        page.fill("#end", END.strftime("%Y-%m-%d %H:%M"))

        # The tags a normalised path would confuse come first, so that mix-up is what fails.
        order = ["evil/../str/state", "a/./b", "./..", "x%2e%2e/y", "q?x=1", "a/b", "str/state"]
        for name in order:
            index = list(ODD_STRING_TAGS).index(name)
            prefix = ODD_STRING_TAGS[name]
            times = odd_rows(index)
            # Runs of alternating values: each lasts until the next row, the last to the range end.
            expected: dict[str, list[tuple[int, int]]] = {}
            for k, (begin, end) in enumerate(zip(times, [*times[1:], END], strict=True)):
                expected.setdefault(f"{prefix}-{k % 2}", []).append((ms(begin), ms(end)))
            pick_tag(page, name)
            shown = {label: sorted(map(tuple, runs)) for label, runs in chart_spans(page).items()}
            assert shown == expected, name
            client_spans = service.client.get_spans(name, (START, END))
            assert sorted((s.value, ms(s.begin_at), ms(s.end_at)) for s in client_spans) == sorted(
                (label, *run) for label, runs in expected.items() for run in runs
            )

        for name, base in ODD_NUMERIC_TAGS.items():
            index = len(ODD_STRING_TAGS) + list(ODD_NUMERIC_TAGS).index(name)
            times = odd_rows(index)
            step = 1 if base > 0 else -1
            pick_tag(page, name)
            twa = trace(page, "twa")
            # Rows on whole hours: a 15-minute bucket lies within one value, or before the first.
            width = timedelta(minutes=15)
            buckets = [START + n * width for n in range((END - START) // width)]
            held = [sum(at <= bucket for at in times) for bucket in buckets]
            assert [datetime.fromisoformat(x) for x in twa["x"]] == buckets, name
            assert twa["y"] == [None if n == 0 else base + step * (n - 1) for n in held], name
    finally:
        context.close()

    reads = [r for r in requests if "/v1/" in r.url]
    assert reads
    for request in reads:
        path = urlparse(request.url).path
        assert path in ("/v1/coverage", "/v1/tags", "/v1/spans", "/v1/metrics/samples"), path
        for name in [*ODD_STRING_TAGS, *ODD_NUMERIC_TAGS]:
            assert name not in path and name not in unquote(path), (name, path)
    # Every name picked travelled, unchanged, in a request body.
    sent = set()
    for request in reads:
        body = json.loads(request.post_data) if request.post_data else {}
        sent.update(body.get("tag", []))
        if "tag_name" in body:
            sent.add(body["tag_name"])
    assert {*ODD_STRING_TAGS, *ODD_NUMERIC_TAGS} <= sent


# ---------------------------------------------------------------- a demo that looks right


def open_with_key(page: Page, url: str, key: str) -> None:
    """Load the page, enter `key` and wait until its tags are listed."""
    page.goto(f"{url}/ui")
    page.fill("#key", key)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#tag-list button", timeout=WAIT_MS)


def sample_bodies(requests: list[Request]) -> list[dict]:
    return [json.loads(r.post_data) for r in requests if r.url.endswith("/v1/metrics/samples")]


def test_page_opens_on_the_latest_materialised_day_and_reads_times_as_utc_24_hour_text(
    service, browser
):
    # A browser far from UTC, in a locale of AM/PM times: the page must show neither.
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, timezone_id="America/Los_Angeles", locale="en-US"
    )
    page = context.new_page()
    page.clock.set_fixed_time(datetime(2026, 3, 3, 15, 0, tzinfo=UTC))
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    try:
        open_with_key(page, service.url, service.key)
        # The latest materialised day (2026-03-03), not today (which has no data).
        assert page.input_value("#start") == "2026-03-03 00:00"
        assert page.input_value("#end") == "2026-03-04 00:00"
        assert "2026-03-01 to 2026-03-03" in page.text_content("#coverage")
        for field in ("start", "end"):
            assert page.get_attribute(f"#{field}", "type") == "text"
            assert "UTC" in page.text_content(f"label[for={field}]")
        pick_tag(page, service.numeric_tag)
        twa = trace(page, "twa")
        day = datetime(2026, 3, 3, tzinfo=UTC)
        assert [datetime.fromisoformat(x) for x in twa["x"]] == [
            day + timedelta(minutes=n) for n in range(1440)
        ]
        assert sum(y is not None for y in twa["y"]) > 1000

        # "Last day" ends now (15:00 UTC, 07:00 AM in Los Angeles): shown in UTC, 24-hour.
        page.click("button[data-days='1']")
        assert page.input_value("#start") == "2026-03-02 15:00"
        assert page.input_value("#end") == "2026-03-03 15:00"

        # A time typed in is read as UTC: exactly that instant is requested.
        page.wait_for_function("() => document.getElementById('chart').dataset.tag !== ''")
        page.fill("#start", "2026-03-02 13:30")
        page.click("#range-form button[type=submit]")
        page.wait_for_function(
            "name => document.getElementById('chart').dataset.tag === name",
            arg=service.numeric_tag,
            timeout=WAIT_MS,
        )
        last = sample_bodies(requests)[-1]
        assert datetime.fromisoformat(last["start"]) == datetime(2026, 3, 2, 13, 30, tzinfo=UTC)
        assert datetime.fromisoformat(last["end"]) == datetime(2026, 3, 3, 15, 0, tzinfo=UTC)

        # Text that is not a UTC time is refused, saying how to type it, and nothing is read.
        sent = len(requests)
        for typed in ("03/02/2026, 01:30 PM", "2026-02-30 10:00", "2026-03-02 25:00"):
            page.fill("#start", typed)
            page.click("#range-form button[type=submit]")
            assert "YYYY-MM-DD HH:MM" in page.text_content("#status.error")
        assert len(requests) == sent
    finally:
        context.close()


def test_page_says_plainly_when_nothing_is_materialised(service, browser):
    context = browser.new_context()
    page = context.new_page()
    try:
        open_with_key(page, service.url, service.other_key)
        assert "Nothing is materialised" in page.text_content("#coverage")
        assert page.is_hidden("#latest-day")
    finally:
        context.close()


def hue(colour: str) -> tuple[float, float]:
    """Hue in degrees and saturation of a CSS `rgb(r, g, b)` or `#rrggbb` colour."""
    if colour.startswith("#"):
        rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    else:
        rgb = [int(part) for part in re.findall(r"\d+", colour)[:3]]
    h, s, _ = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    return h * 360, s


def is_alarming(colour: str) -> bool:
    """Red to orange, and saturated."""
    h, s = hue(colour)
    return (h <= 40 or h >= 340) and s > 0.5


def is_reassuring(colour: str) -> bool:
    """Green to blue, and saturated."""
    h, s = hue(colour)
    return 80 <= h <= 250 and s > 0.4


def test_fault_states_are_drawn_red_and_running_is_not(service, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        open_with_key(page, service.url, service.key)
        page.fill("#start", "2026-03-01 00:00")
        page.fill("#end", "2026-03-04 00:00")
        # A tag that changes until the range ends carries nothing forward: no such mark.
        pick_tag(page, service.numeric_tag)
        assert not page.evaluate("() => document.getElementById('chart').layout.shapes")

        pick_tag(page, service.string_tag)
        # The fill each state's bars are painted with, as rendered.
        fills = page.evaluate(
            """() => {
                const chart = document.getElementById('chart');
                const bars = chart.querySelectorAll('.barlayer .trace');
                return Object.fromEntries(chart._fullData.map((t, i) =>
                    [t.name, bars[i].querySelector('.point path').style.fill]));
            }"""
        )
        assert {"FAULT", "RUNNING"} <= set(fills), fills
        assert is_alarming(fills["FAULT"]) and not is_reassuring(fills["FAULT"])
        assert is_reassuring(fills["RUNNING"]) and not is_alarming(fills["RUNNING"])

        # Any state of those kinds, by its name alone, whatever else is drawn.
        colour = "name => stateColour(name)"
        for name in ("FAULT", "fault", "Alarm", "ERROR", "MOTOR_TRIP", "FAILED", "ALERT"):
            assert is_alarming(page.evaluate(colour, name)), name
        for name in ("OK", "RUNNING", "Normal", "on"):
            assert is_reassuring(page.evaluate(colour, name)), name
        for name in ("IDLE", "OPEN", "MAINTENANCE", "STANDBY"):
            shown = page.evaluate(colour, name)
            assert not is_alarming(shown) and not is_reassuring(shown), name
        assert page.evaluate(colour, "FAULT") == page.evaluate(colour, "FAULT")
        palettes = page.evaluate("() => PALETTES")
        assert all(map(is_alarming, palettes["fault"]))
        assert all(map(is_reassuring, palettes["good"]))
        assert not any(is_alarming(c) or is_reassuring(c) for c in palettes["other"])
    finally:
        context.close()


def carried_marks(page: Page) -> tuple[list[str], list[str]]:
    """The start of each carried-forward shading drawn, and the notes on the chart."""
    return page.evaluate(
        """() => {
            const layout = document.getElementById('chart').layout;
            return [(layout.shapes || []).filter(s => s.name === 'carried forward')
                        .map(s => s.x0),
                    (layout.annotations || []).map(a => a.text)];
        }"""
    )


def test_a_value_carried_forward_to_the_range_end_is_marked(odd_names_service, browser):
    service = odd_names_service
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        open_with_key(page, service.url, service.key)
        page.fill("#start", START.strftime("%Y-%m-%d %H:%M"))
        page.fill("#end", END.strftime("%Y-%m-%d %H:%M"))

        # `num` changes last at 03-02 05:00: nothing new after its 15-minute bucket.
        pick_tag(page, "num")
        last = odd_rows(len(ODD_STRING_TAGS))[-1]
        assert last == datetime(2026, 3, 2, 5, tzinfo=UTC)
        shaded, notes = carried_marks(page)
        assert [datetime.fromisoformat(x) for x in shaded] == [last + timedelta(minutes=15)]
        assert notes == [
            "no new values since 2026-03-02 05:15 UTC: the last value is carried forward"
        ]
        assert "no new values since 2026-03-02 05:15 UTC" in page.text_content("#status")

        # `str/state` changes last at 03-01 22:00 (its newest span's raw begin), exactly.
        pick_tag(page, "str/state")
        last = odd_rows(0)[-1]
        shaded, notes = carried_marks(page)
        assert [datetime.fromisoformat(x) for x in shaded] == [last]
        assert notes == [
            "no new values since 2026-03-01 22:00 UTC: the last value is carried forward"
        ]
    finally:
        context.close()


def test_coverage_route_answers_the_keys_tenants_days_only(service):
    with httpx.Client(base_url=service.url) as http:
        for headers in (
            {},
            {"Authorization": "Bearer tf_not_a_key"},
            # Another tenant's key, claiming this tenant: refused as on every route.
            {"Authorization": f"Bearer {service.other_key}", "X-Tagflow-Tenant": service.tenant},
        ):
            refused = http.get("/v1/coverage", headers=headers)
            assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
        answer = http.get("/v1/coverage", headers={"Authorization": f"Bearer {service.key}"})
        assert answer.status_code == 200
        assert answer.json() == {"first_day": "2026-03-01", "last_day": "2026-03-03", "days": 3}
        assert str(service.root) not in answer.text and service.tenant not in answer.text
        # The other key answers its own tenant, of which nothing is materialised.
        other = http.get("/v1/coverage", headers={"Authorization": f"Bearer {service.other_key}"})
        assert other.json() == {"first_day": None, "last_day": None, "days": 0}
