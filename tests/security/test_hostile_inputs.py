"""Hostile input at every door that takes more than a tenant name: tag names, time ranges,
bucket widths and offsets, aggregates, limits and formats through the Python client on a
store, the HTTP service (well-formed requests and raw malformed ones) and the CLI.

Every answer is a result or a typed error: a TagflowError from the client, a 4xx with a JSON
error body from the service (never a 5xx), exit code 0 or 2 with an error line from the CLI.
No traceback, store path, temp dir, source URL or password is shown; nothing changes on disk
outside what the call may write; no SQL from the input runs (a sentinel table survives, a role
the input tries to create never appears). Hostile tenant names: test_hostile_tenant_names.py.
"""

from __future__ import annotations

import json
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pandas as pd
import psycopg
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from psycopg import conninfo, sql
from typer.testing import CliRunner

from tagflow.cli.app import app as cli_app
from tagflow.cli.runs import days_in_range
from tagflow.demo.synthetic_plant import generate_plant
from tagflow.errors import TagflowError
from tagflow.readapi import Client
from tagflow.readapi.server.app import create_app
from tagflow.readapi.server.keys import KeyStore
from tagflow.settings import Settings
from tagflow.source.connection import libpq_url
from tests.conftest import drop_tenant, unique_tenant_name
from tests.readapi.conftest import BackgroundServer
from tests.stores import materialise_from_source

TENANT = unique_tenant_name("fuzz")
SENTINEL = f"{TENANT}.sentinel"
SENTINEL_TABLE = sql.Identifier(TENANT, "sentinel")
ROLE = f"pwned_{uuid.uuid4().hex[:10]}"
CANARY_PASSWORD = f"canary-pw-{uuid.uuid4().hex[:12]}"
DAY1, DAY2 = date(2026, 3, 1), date(2026, 3, 2)
# Nothing listens there: reaching it is SourceUnavailable after the connection retries.
DEAD_SOURCE = f"postgresql://alice:{CANARY_PASSWORD}@/db?host=/nonexistent-tagflow-fuzz-dir"

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# ------------------------------------------------------------------------------ strategies

SQL_PAYLOADS = [
    f"'; DROP TABLE {SENTINEL}; --",
    f"x'); DROP TABLE {SENTINEL}; --",
    f'"; DROP TABLE {SENTINEL}; --',
    f"'; SET default_transaction_read_only = off; DROP TABLE {SENTINEL}; --",
    f"'; CREATE ROLE {ROLE}; --",
    f"1; CREATE ROLE {ROLE}",
    "' OR '1'='1",
    "'; SELECT pg_sleep(30); --",
    f"$$; DROP TABLE {SENTINEL}; $$",
    f"\\'; DROP TABLE {SENTINEL}; --",
]
PATH_PAYLOADS = [
    "../../etc/passwd",
    "..",
    "../",
    "./.",
    "..\\..\\x",
    "tenant=other/date=2026-03-01/part-0.parquet",
    "%2e%2e%2f%2e%2e%2fetc",
    "..%2f..%2f",
    "%00",
    "%25",
    "/",
    "//",
    "~",
    "/etc/passwd",
    "file:///etc/passwd",
    "C:\\Windows",
]
ODD_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\r\n",
    "\t",
    "\u202e",
    "\ufeff",
    "ｐｌａｎｔ",
    "a" * 5000,
    "NaN",
    "null",
    "None",
    "[]",
    "{}",
    "*",
    "%",
    "_",
    "?",
    "#",
    "&tag=x",
    "😀",
]
FRAGMENTS = SQL_PAYLOADS + PATH_PAYLOADS + ODD_TEXT

ZONES = [
    UTC,
    timezone(timedelta(hours=14)),
    timezone(timedelta(hours=-12)),
    timezone(timedelta(minutes=-1)),
    timezone(timedelta(hours=5, minutes=30)),
]
near = st.datetimes(
    min_value=datetime(2026, 2, 27),
    max_value=datetime(2026, 3, 4),
    timezones=st.sampled_from(ZONES),
)
naive = st.datetimes(min_value=datetime(2026, 2, 27), max_value=datetime(2026, 3, 4))
anywhere = st.datetimes(timezones=st.sampled_from(ZONES))  # years 1..9999, any offset
EXTREME_INSTANTS = [
    datetime.min.replace(tzinfo=UTC),
    datetime.max.replace(tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-12))),
    datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(9000, 1, 1, tzinfo=UTC),
    pd.Timestamp.min.tz_localize("UTC"),
    pd.Timestamp.max.tz_localize("UTC"),
    pd.Timestamp("2026-03-01 00:00:00.000000001", tz="UTC"),
    pd.NaT,
    date(2026, 3, 1),
    datetime(2026, 3, 1),
]
TIME_TEXT = [
    "",
    "now",
    "today",
    "2026-03-01",
    "2026-03-01T00:00:00",
    "2026-03-01T00:00:00Z",
    "2026-03-01T00:00:00+00:00",
    "20226-03-01T00:00:00Z",
    "+275760-09-13T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59.999999-12:00",
    "2026-02-30T00:00:00Z",
    "2026-03-01T24:00:00Z",
    "2026-03-01T00:00:00+24:00",
    "2026-03-01T00:00:00.0000001Z",
    "1e10",
    "-1",
    "2026-03-01T00:00:00Z\x00",
    "2026-03-01%2000:00:00Z",
    "2026-03-01T00:00:00%2B00:00",
    "../2026-03-01T00:00:00Z",
    "2026-03-01T00:00:00Z' OR '1'='1",
    " 2026-03-01T00:00:00Z ",
    "２０２６-03-01T00:00:00Z",
    "x" * 100,
]
instants = st.one_of(
    near,
    naive,
    anywhere,
    st.sampled_from(EXTREME_INSTANTS),
    near.map(datetime.isoformat),
    anywhere.map(datetime.isoformat),
    st.sampled_from(TIME_TEXT + FRAGMENTS),
    st.text(max_size=40),
    st.integers(),
    st.floats(),
    st.none(),
    st.binary(max_size=20),
)
short_spans = st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=3))
valid_ranges = st.tuples(near, short_spans).map(lambda p: (p[0], p[0] + p[1]))
time_ranges = st.one_of(
    st.none(),
    valid_ranges,
    st.tuples(instants, instants),
    st.lists(instants, max_size=3),
    near.map(lambda t: (t, t)),
    st.tuples(near, short_spans).map(lambda p: (p[0] + p[1], p[0])),  # reversed
    st.sampled_from(["2026-03-01/2026-03-02", 5, {"start": 1}, b"x"]),
)
DURATION_TEXT = [
    "0s",
    "0",
    "-15m",
    "15m",
    "1h30m",
    "7m13s",
    "1d",
    "3660d",
    "3661d",
    "99999999999999999d",
    "9" * 62 + "us",
    "1e3s",
    "15 m",
    "15M",
    "m15",
    "1h 30m",
    "15m\x00",
    "15m; DROP TABLE x",
    "%31%35m",
    "../15m",
    "inf",
    "-0s",
    "+1h",
    "--1h",
    "+-1h",
    "٣m",
    "1us",
    "1ms",
    "P1D",
    "PT15M",
    "00:15:00",
]
DURATIONS = [
    timedelta(0),
    -timedelta(microseconds=1),
    -timedelta(hours=1),
    timedelta(microseconds=1),
    timedelta(minutes=7, seconds=13),
    timedelta(hours=1),
    timedelta(days=3661),
    timedelta.max,
    timedelta.min,
    pd.Timedelta(nanoseconds=1),
    pd.Timedelta("15min"),
    pd.NaT,
]
durations = st.one_of(
    st.sampled_from(DURATION_TEXT + FRAGMENTS),
    st.sampled_from(DURATIONS),
    st.timedeltas(min_value=-timedelta(days=2), max_value=timedelta(days=2)),
    st.text(max_size=16),
    st.integers(),
    st.floats(),
    st.none(),
)
AGGREGATES = ["average", "min", "max", "first", "last", "count"]
aggregates = st.one_of(
    st.sampled_from(AGGREGATES + FRAGMENTS + ["AVERAGE", "avg", "twa", "average\x00"]),
    st.text(max_size=12),
    st.none(),
    st.integers(),
    st.lists(st.sampled_from(AGGREGATES), max_size=2),
)
bucket_functions = st.one_of(
    st.sampled_from(["locf", "LOCF", "linear", "locf ", "locf\x00", *FRAGMENTS]),
    st.none(),
    st.integers(),
    st.lists(st.just("locf"), max_size=2),
)
limits = st.one_of(
    st.none(),
    st.integers(min_value=-3, max_value=5),
    st.integers(),
    st.booleans(),
    st.floats(),
    st.sampled_from(["3", "1e3", "²"]),
)


def tag_names(real: list[str]) -> st.SearchStrategy[Any]:
    """Real tag names, hostile text and the two glued together, and a few non-strings."""
    known = st.sampled_from(real)
    hostile = st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=60))
    return st.one_of(
        known,
        hostile,
        st.tuples(known, hostile).map("".join),
        st.tuples(hostile, known).map("".join),
        known.map(str.upper),
        known.map(lambda name: name.replace("/", "%2F")),
        known.map(lambda name: name + "\x00"),
        st.sampled_from([5, None, b"plant", ["a"]]),
    )


def tag_lists(real: list[str]) -> st.SearchStrategy[Any]:
    name = tag_names(real)
    return st.one_of(
        st.none(),
        name,
        st.lists(name, max_size=4),
        st.sampled_from([5, b"plant", {"a": 1}, [1, 2], [None], ()]),
    )


# The arguments of each read of readapi.Client.
READS = {
    "get_tags": ("time_range",),
    "get_spans": ("tag_name", "time_range", "limit"),
    "get_metric_data": ("tag_names", "time_range"),
    "get_metric_arrow": ("tag_names", "time_range"),
    "sample_metric_data": (
        "bucket_width",
        "bucket_function",
        "aggregate_function",
        "bucket_offset",
        "tag_names",
        "time_range",
    ),
    "derivative": (
        "bucket_width",
        "aggregate_function",
        "bucket_offset",
        "tag_names",
        "time_range",
    ),
    "counter_rate": ("bucket_width", "bucket_offset", "tag_names", "time_range"),
}


def client_calls(real: list[str]) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """(method, keyword arguments) of a read: one argument hostile and the others valid (so
    the hostile value reaches the data paths), or every argument hostile."""
    valid = {
        "time_range": st.none() | valid_ranges,
        "tag_name": st.sampled_from(real),
        "tag_names": st.none() | st.lists(st.sampled_from(real), min_size=1, max_size=3),
        "limit": st.none() | st.integers(min_value=1, max_value=5),
        "bucket_width": st.sampled_from(["1h", "15m", "7m13s", "1d", "90s", timedelta(hours=2)]),
        "bucket_offset": st.sampled_from([timedelta(0), "0s", "30m", "11s", "-5m"]),
        "aggregate_function": st.sampled_from(AGGREGATES[:-1]),  # derivative refuses count
        "bucket_function": st.just("locf"),
    }
    hostile = {
        "time_range": time_ranges,
        "tag_name": tag_names(real),
        "tag_names": tag_lists(real),
        "limit": limits,
        "bucket_width": durations,
        "bucket_offset": durations,
        "aggregate_function": aggregates,
        "bucket_function": bucket_functions,
    }

    def call(method: str, hostile_names: frozenset[str]):
        arguments = {
            name: hostile[name] if name in hostile_names else valid[name] for name in READS[method]
        }
        return st.tuples(st.just(method), st.fixed_dictionaries(arguments))

    def calls_of(method: str):
        one_hostile = st.sampled_from(READS[method]).map(lambda name: frozenset([name]))
        every = st.just(frozenset(READS[method]))
        return st.one_of(one_hostile, every).flatmap(lambda names: call(method, names))

    return st.sampled_from(sorted(READS)).flatmap(calls_of)


# ------------------------------------------------------------------------------ the world


@dataclass(frozen=True)
class World:
    """A temp dir holding a store (DAY1 materialised; DAY2 only in the source), a keys file,
    a file beside them, and the read service over it with source fallback."""

    base: Path
    store: Path
    source_url: str
    secrets: tuple[str, ...]
    tags: list[str]
    key: str
    service_url: str

    def assert_nothing_leaks(self, text: str, sent: str) -> None:
        """No secret, path or trace in `text`, unless the caller sent it in `sent`."""
        for secret in self.secrets:
            assert secret not in text or secret in sent, f"{secret!r} leaked: {text[:500]!r}"


def with_canary_password(pg_url: str) -> tuple[str, str]:
    """The test server's URL carrying a password that must never be shown (its own when it
    has one; a canary otherwise, which the embedded server's trust auth ignores)."""
    params = conninfo.conninfo_to_dict(libpq_url(pg_url))
    password = params.get("password") or CANARY_PASSWORD
    return conninfo.make_conninfo(libpq_url(pg_url), password=password), str(password)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
    }


@pytest.fixture(scope="module")
def world(pg_url: str, admin_conn: psycopg.Connection) -> Iterator[World]:
    """The fuzzed tenant (with its sentinel table), its store and the service over it."""
    generate_plant(pg_url, [TENANT], tags=16, days=2, start=DAY1, seed=13, rows_per_tag_day=20)
    admin_conn.execute(sql.SQL("CREATE TABLE {} (note text)").format(SENTINEL_TABLE))
    admin_conn.execute(sql.SQL("INSERT INTO {} VALUES ('intact')").format(SENTINEL_TABLE))
    source_url, password = with_canary_password(pg_url)
    host = str(conninfo.conninfo_to_dict(libpq_url(pg_url)).get("host") or "")
    try:
        with tempfile.TemporaryDirectory(prefix="tagflow-fuzz-") as folder:
            base = Path(folder)
            store = base / "store"
            materialise_from_source(source_url, store, TENANT, [DAY1])
            keys_file = base / "keys" / "api_keys.json"
            key, _ = KeyStore(keys_file).add(TENANT)
            (base / "outside.txt").write_text("must not change")
            tags = [tag.name for tag in Client(store=store, tenant=TENANT).get_tags()]
            secrets = (
                folder,
                base.name,
                password,
                source_url,
                *([host] if host.startswith("/") else []),
                "Traceback",
                'File "',
                "psycopg",
            )
            with BackgroundServer(create_app(store, keys_file, source_url)) as server:
                yield World(
                    base,
                    store,
                    source_url,
                    secrets,
                    tags,
                    key,
                    server.url,
                )
    finally:
        drop_tenant(admin_conn, TENANT)


@pytest.fixture(autouse=True)
def no_sql_from_input_ran(world: World, admin_conn: psycopg.Connection) -> Iterator[None]:
    """After each test: the sentinel table holds its row and the role was never created."""
    yield
    rows = admin_conn.execute(sql.SQL("SELECT note FROM {}").format(SENTINEL_TABLE)).fetchall()
    assert rows == [("intact",)]
    assert (
        admin_conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone() is None
    )


# ------------------------------------------------------------------------------ the client


@SETTINGS
@given(data=st.data())
def test_client_on_a_store_answers_or_raises_a_typed_error(world: World, data) -> None:
    method, arguments = data.draw(client_calls(world.tags), label="call")
    before = snapshot(world.base)
    with Client(store=world.store, tenant=TENANT, source_url=world.source_url) as client:
        try:
            getattr(client, method)(**arguments)
            event(f"{method}: answered")
        except TagflowError as error:
            event(f"{method}: {type(error).__name__}")
            world.assert_nothing_leaks(f"{error}\n{error!r}", repr(arguments))
    assert snapshot(world.base) == before


@settings(max_examples=40, deadline=None)
@given(window=time_ranges)
def test_client_default_time_range_is_parsed_or_refused(world: World, window) -> None:
    try:
        client = Client(store=world.store, tenant=TENANT, default_time_range=window)
    except TagflowError as error:
        world.assert_nothing_leaks(str(error), repr(window))
        return
    assert world.store.as_posix() not in repr(client)
    with client:
        try:
            client.get_tags()
        except TagflowError as error:
            world.assert_nothing_leaks(str(error), repr(window))


GOOD_RANGE = (datetime(2026, 3, 1, 6, tzinfo=UTC), datetime(2026, 3, 2, 6, tzinfo=UTC))
ODD_VALUES = [None, 0, -1, 1.5, float("nan"), b"x", [], {}, object()]
FIXED_INSTANTS = EXTREME_INSTANTS + TIME_TEXT + FRAGMENTS + ODD_VALUES
# Every listed hostile value of each kind of argument, tried in every read in turn.
FIXED_HOSTILE: dict[str, list[Any]] = {
    "time_range": [(value, GOOD_RANGE[1]) for value in FIXED_INSTANTS]
    + [(GOOD_RANGE[0], value) for value in FIXED_INSTANTS]
    + [(GOOD_RANGE[1], GOOD_RANGE[0]), (GOOD_RANGE[0], GOOD_RANGE[0]), GOOD_RANGE[:1]]
    + [[*GOOD_RANGE, GOOD_RANGE[1]], "2026-03-01/2026-03-02", *ODD_VALUES[1:]],
    "tag_name": FRAGMENTS + ODD_VALUES + ["\ud800", "plant/\udcff"],
    "tag_names": FRAGMENTS + ODD_VALUES + [[value] for value in FRAGMENTS + ODD_VALUES],
    "limit": [0, -1, True, 1.5, "3", float("inf"), 2**70, *ODD_VALUES],
    "bucket_width": DURATION_TEXT + DURATIONS + FRAGMENTS + ODD_VALUES,
    "bucket_offset": DURATION_TEXT + DURATIONS + FRAGMENTS + ODD_VALUES,
    "aggregate_function": FRAGMENTS + ODD_VALUES + ["AVERAGE", "count\x00", ["average"]],
    "bucket_function": FRAGMENTS + ODD_VALUES + ["LOCF", "linear", ["locf"]],
}


@pytest.mark.parametrize(
    "method, slot", [(method, slot) for method, slots in READS.items() for slot in slots]
)
def test_client_on_a_store_every_listed_hostile_value_in_every_argument(
    world: World, method: str, slot: str
) -> None:
    valid = {
        "time_range": GOOD_RANGE,
        "tag_name": world.tags[0],
        "tag_names": world.tags[:2],
        "limit": 3,
        "bucket_width": "1h",
        "bucket_offset": "0s",
        "aggregate_function": "average",
        "bucket_function": "locf",
    }
    before = snapshot(world.base)
    with Client(store=world.store, tenant=TENANT, source_url=world.source_url) as client:
        for value in FIXED_HOSTILE[slot]:
            arguments = {name: valid[name] for name in READS[method]} | {slot: value}
            try:
                getattr(client, method)(**arguments)
            except TagflowError as error:
                world.assert_nothing_leaks(f"{error}\n{error!r}", repr(arguments))
            except Exception as error:
                raise AssertionError(f"{method}({slot}={value!r}) raised {error!r}") from error
    assert snapshot(world.base) == before


# ------------------------------------------------------------------------------ HTTP

PARAMETERS = [
    "start",
    "end",
    "bucket_width",
    "bucket_offset",
    "aggregate_function",
    "bucket_function",
    "limit",
    "format",
    "allow_source",
    "tag",
]
# What an HTTP client can send: any text except lone surrogates (not encodable as UTF-8).
http_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
GOOD = {
    "start": "2026-03-01T06:00:00Z",
    "end": "2026-03-02T06:00:00Z",
    "bucket_width": "1h",
}


def http_values(real: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(TIME_TEXT + DURATION_TEXT + FRAGMENTS + real),
        st.sampled_from(["true", "false", "json", "arrow", "locf", "3", "0", "-1", "²"]),
        st.sampled_from(AGGREGATES),
        http_text,
        near.map(datetime.isoformat),
        st.integers().map(str),
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | http_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(http_text, inner, max_size=3),
    max_leaves=8,
)


@dataclass(frozen=True)
class HttpCall:
    method: str
    path: str
    params: list[tuple[str, str]]
    content: bytes | None = None


def http_calls(real: list[str]) -> st.SearchStrategy[HttpCall]:
    """Well-formed requests with hostile values: often a valid base (so reads get deep)
    with parameters replaced or repeated by hostile values."""
    values = http_values(real)
    base = st.fixed_dictionaries(
        {},
        optional={
            "start": st.just(GOOD["start"]),
            "end": st.just(GOOD["end"]),
            "bucket_width": st.just(GOOD["bucket_width"]),
            "tag": st.lists(st.sampled_from(real), max_size=2),
        },
    )
    hostile = st.lists(st.tuples(st.sampled_from(PARAMETERS), values), max_size=4)
    tag_path = st.one_of(
        st.sampled_from(real),
        tag_names(real).filter(lambda t: isinstance(t, str) and "\ud800" not in t),
        http_text,
    ).flatmap(
        lambda name: st.sampled_from(
            [quote(name, safe=""), quote(name, safe="/"), quote(name, safe="/%.")]
        )
    )
    kind = st.one_of(
        st.sampled_from(["data", "samples", "derivative", "counter_rate"]),
        st.sampled_from(FRAGMENTS).map(lambda k: quote(k, safe="")),
    )

    def get(path: str, fixed: dict[str, Any], extra: list[tuple[str, str]]) -> HttpCall:
        params = [(k, v) for k, vs in fixed.items() for v in (vs if isinstance(vs, list) else [vs])]
        return HttpCall("GET", path, params + extra)

    get_requests = st.builds(
        get,
        st.one_of(
            st.just("/v1/tags"),
            tag_path.map(lambda t: f"/v1/spans/{t}"),
            kind.map(lambda k: f"/v1/metrics/{k}"),
        ),
        base,
        hostile,
    )
    post_body = st.one_of(
        st.builds(
            lambda fixed, extra: {**fixed, **extra},
            base,
            st.dictionaries(st.sampled_from([*PARAMETERS, "x", ""]), json_values, max_size=5),
        ).map(lambda body: json.dumps(body).encode()),
        json_values.map(lambda value: json.dumps(value).encode()),
        st.sampled_from([b"", b"{", b"\x00", b"[" * 5000 + b"]" * 5000, b'{"tag": "x"' * 50]),
        st.binary(max_size=40),
    )
    post_requests = st.builds(
        lambda k, body: HttpCall("POST", f"/v1/metrics/{k}", [], body), kind, post_body
    )
    return st.one_of(get_requests, post_requests)


def check_http_answer(world: World, answer: httpx.Response, sent: str) -> None:
    assert answer.status_code < 500, (answer.status_code, answer.text[:500], sent[:500])
    if answer.status_code >= 400:
        body = answer.json()
        assert set(body) == {"error", "message"}, body
    world.assert_nothing_leaks(answer.content.decode("utf-8", "replace"), sent)


@SETTINGS
@given(data=st.data())
def test_http_hostile_parameters_get_an_answer_or_a_json_4xx(world: World, data) -> None:
    call = data.draw(http_calls(world.tags), label="call")
    before = snapshot(world.base)
    headers = {"Authorization": f"Bearer {world.key}", "Content-Type": "application/json"}
    with httpx.Client(base_url=world.service_url, headers=headers, timeout=60) as http:
        answer = http.request(call.method, call.path, params=call.params, content=call.content)
    sent = f"{call.path} {call.params!r} {call.content!r}"
    event(f"{call.method} {answer.status_code}")
    check_http_answer(world, answer, sent)
    assert snapshot(world.base) == before


TIME_STRINGS = TIME_TEXT + [value.isoformat() for value in EXTREME_INSTANTS]
JSON_ODDITIES = [None, 0, -1, 1.5, 1e308, 2**70, True, [], {}, ["x"], {"a": 1}]
# (method, path, parameter, kind-specific values); every FRAGMENT is tried too.
HTTP_SWEEP = [
    ("GET", "/v1/tags", "start", TIME_STRINGS),
    ("GET", "/v1/tags", "end", TIME_STRINGS),
    ("GET", "/v1/tags", "format", ["JSON", "arrow\x00", "parquet"]),
    ("GET", "/v1/tags", "allow_source", ["TRUE", "maybe", "2"]),
    ("GET", "/v1/spans/{tag}", "limit", ["0", "-1", "²", "１", "1e3", "9" * 10, "3.5"]),
    ("GET", "/v1/metrics/data", "tag", []),
    ("GET", "/v1/metrics/samples", "bucket_width", DURATION_TEXT),
    ("GET", "/v1/metrics/samples", "bucket_offset", DURATION_TEXT),
    ("GET", "/v1/metrics/samples", "aggregate_function", ["AVERAGE", "count\x00"]),
    ("GET", "/v1/metrics/samples", "bucket_function", ["LOCF", "linear"]),
    ("GET", "/v1/metrics/derivative", "aggregate_function", ["count"]),
    ("GET", "/v1/metrics/counter_rate", "bucket_width", DURATION_TEXT),
    *[
        ("POST", "/v1/metrics/samples", name, JSON_ODDITIES + TIME_STRINGS[:8])
        for name in PARAMETERS
    ],
]


@pytest.mark.parametrize("method, path, parameter, values", HTTP_SWEEP)
def test_http_every_listed_hostile_value_in_every_parameter(
    world: World, method: str, path: str, parameter: str, values: list[Any]
) -> None:
    base: dict[str, Any] = {**GOOD, "tag": world.tags[:2]}
    path = path.format(tag=quote(world.tags[0], safe=""))
    before = snapshot(world.base)
    headers = {"Authorization": f"Bearer {world.key}"}
    with httpx.Client(base_url=world.service_url, headers=headers, timeout=60) as http:
        for value in [*values, *FRAGMENTS]:
            if method == "POST":
                answer = http.post(path, json={**base, parameter: value})
            else:
                answer = http.get(path, params={**base, parameter: value})
            check_http_answer(world, answer, f"{parameter}={value!r}")
    assert snapshot(world.base) == before


def test_http_hostile_tag_names_in_the_path(world: World) -> None:
    real = world.tags[0]
    names = FRAGMENTS + [real + f for f in FRAGMENTS] + [f + real for f in FRAGMENTS]
    headers = {"Authorization": f"Bearer {world.key}"}
    with httpx.Client(base_url=world.service_url, headers=headers, timeout=60) as http:
        for name in names:
            for safe in ("", "/", "/%."):
                answer = http.get(f"/v1/spans/{quote(name, safe=safe)}", params=GOOD)
                check_http_answer(world, answer, name)


RAW_TARGETS = [
    b"/v1/spans/../../../etc/passwd",
    b"/v1/spans/%2e%2e/%2e%2e/x",
    b"/v1/spans/%00",
    b"/v1/spans/%ff%fe",
    b"/v1/spans/\xc3\xbc",
    b"/v1/tags?start=%ZZ&end=%",
    b"/v1/tags?start=2026-03-01T00:00:00Z&end=2026-03-02T00:00:00Z&start=x",
    b"/v1/../v1/tags",
    b"/v1/metrics/..%2fsamples",
    b"/v1/metrics/samples?bucket_width=%00",
    b"/" + b"a" * 60_000,
    b"/v1/tags?" + b"tag=x&" * 5000,
    b"*",
    b"http://evil.example/v1/tags",
    b"/v1/tags#fragment",
    b"/v1/tags?start=2026-03-01T00:00:00+00:00&end=2026-03-02T00:00:00+00:00",
]
raw_targets = st.one_of(
    st.sampled_from(RAW_TARGETS),
    st.builds(
        lambda prefix, tail: prefix + tail,
        st.sampled_from(
            [b"/v1/spans/", b"/v1/tags?start=", b"/v1/metrics/samples?bucket_width=", b"/v1/"]
        ),
        st.binary(max_size=40),
    ),
)


def raw_request(url: str, target: bytes, key: str) -> bytes:
    """Send one request line as given (no client-side normalisation or encoding); return the
    whole response."""
    host, port = url.removeprefix("http://").split(":")
    request = (
        b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + key.encode() + b"\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@settings(max_examples=40, deadline=None)
@given(target=raw_targets)
def test_http_raw_request_lines_never_get_a_5xx(world: World, target: bytes) -> None:
    before = snapshot(world.base)
    response = raw_request(world.service_url, target, world.key)
    status_line = response.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 "), response[:300]
    status = int(status_line.split()[1])
    assert status < 500, response[:500]
    world.assert_nothing_leaks(response.decode("latin-1"), target.decode("latin-1"))
    assert snapshot(world.base) == before
    assert httpx.get(f"{world.service_url}/v1/health").status_code == 200


# ------------------------------------------------------------------------------ the CLI

runner = CliRunner()
DATE_TEXT = [
    "",
    "2026-03-01",
    "2026-03-02",
    "2026-02-30",
    "2026-3-1",
    "20260301",
    "2026-W09-1",
    "2026-03-01T00:00:00Z",
    "0001-01-01",
    "9999-12-31",
    "1969-12-31",
    "2019-12-31",
    "2026-03-01\x00",
    "2026-03-01; DROP TABLE x",
    "../2026-03-01",
    "%32%30%32%36-03-01",
    "yesterday",
    "-1",
    "+2026-03-01",
    "２０２６-03-01",
    " 2026-03-01",
]
cli_dates = st.one_of(
    st.sampled_from(DATE_TEXT + FRAGMENTS),
    st.dates().map(date.isoformat),
    st.text(max_size=20),
)


def refused_before_any_connection(start: str, end: str) -> bool:
    """What `tagflow materialize` refuses while parsing its options (the CLI's own rules)."""
    try:
        days_in_range(date.fromisoformat(start), date.fromisoformat(end), Settings().start_date)
    except (ValueError, TagflowError):
        return True
    return False


def cli_env(world: World) -> dict[str, str]:
    return {
        "DAGSTER_HOME": str(world.base / "dagster"),
        "TAGFLOW_SOURCE_URL": DEAD_SOURCE,
        "TAGFLOW_STORE": str(world.store),
    }


def assert_clean_exit(world: World, result, sent: str, codes: tuple[int, ...]) -> None:
    assert result.exit_code in codes, (result.exit_code, result.output[-2000:])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    world.assert_nothing_leaks(result.output, sent)


@settings(max_examples=60, deadline=None)
@given(start=cli_dates, end=cli_dates)
def test_cli_materialize_refuses_hostile_dates_cleanly(world: World, start: str, end: str) -> None:
    assume(refused_before_any_connection(start, end))
    before = snapshot(world.base)
    arguments = ["materialize", "--tenant", TENANT, f"--start={start}", f"--end={end}"]
    result = runner.invoke(cli_app, arguments, env=cli_env(world))
    assert_clean_exit(world, result, start + end, (2,))
    assert "error" in result.output
    assert snapshot(world.base) == before  # not even the Dagster home


def test_cli_materialize_with_a_dead_source_shows_no_url_or_password(world: World) -> None:
    before = snapshot(world.store)
    arguments = ["materialize", "--tenant", TENANT, "--start=2026-03-02", "--end=2026-03-03"]
    result = runner.invoke(cli_app, arguments, env=cli_env(world))
    assert_clean_exit(world, result, "", (2,))
    assert "no source database server is listening" in result.output
    for secret in (CANARY_PASSWORD, "alice", "nonexistent-tagflow-fuzz-dir"):
        assert secret not in result.output
    assert snapshot(world.store) == before


api_keys = st.one_of(
    st.text(max_size=80),
    st.sampled_from(FRAGMENTS),
    st.text(min_size=513, max_size=600),
    st.sampled_from(["tf_\udcff\udcfe", "key\x00", " padded ", "tf_ü", "tf_" + "a" * 509]),
)


@settings(max_examples=60, deadline=None)
@given(
    tenant=st.one_of(st.just(TENANT), st.sampled_from(SQL_PAYLOADS + PATH_PAYLOADS)),
    key=api_keys,
    key_id=st.one_of(st.text(max_size=20), st.sampled_from(FRAGMENTS)),
)
def test_cli_keys_take_hostile_keys_and_ids_cleanly(
    world: World, tenant: str, key: str, key_id: str
) -> None:
    keys_file = world.base / "cli-keys" / uuid.uuid4().hex / "api_keys.json"
    others = {k: v for k, v in snapshot(world.base).items() if not k.startswith("cli-keys")}
    added = runner.invoke(
        cli_app, ["keys", "add", f"--key={key}", f"--file={keys_file}", "--", tenant]
    )
    assert_clean_exit(world, added, key + tenant, (0, 2))
    if added.exit_code == 0:
        # Only keys a request can carry are accepted, and only their hash is stored.
        assert KeyStore(keys_file).verify(key, tenant) == tenant
        assert all("!" <= c <= "~" for c in key)
        assert len(key) < 8 or key not in keys_file.read_text()
    revoked = runner.invoke(
        cli_app, ["keys", "revoke", f"--key-id={key_id}", f"--file={keys_file}", "--", tenant]
    )
    assert_clean_exit(world, revoked, key_id + tenant, (0, 2))
    listed = runner.invoke(cli_app, ["keys", "list", f"--file={keys_file}"])
    assert_clean_exit(world, listed, "", (0,))
    after = {k: v for k, v in snapshot(world.base).items() if not k.startswith("cli-keys")}
    assert after == others
