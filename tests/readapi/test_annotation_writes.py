"""Span annotation writes (DESIGN §9) through both transports: keys that may write, the HTTP
routes (PATCH / POST / history), their errors and bounds, and the client's update_span,
create_span and get_span_history, on the plant's store and a real state database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tagflow.readapi import (
    COMPUTED,
    AnnotationsNotConfigured,
    Client,
    Conflict,
    InvalidAnnotation,
    PermissionDenied,
    Span,
    StateUnavailable,
    UnknownSpan,
    UnknownTag,
)
from tagflow.readapi.annotation_wire import span_from_json, span_json
from tagflow.readapi.engine.config import ReadConfig
from tagflow.readapi.server.app import create_app
from tagflow.readapi.server.keys import KeyStore, keys_app
from tests.conftest import free_port
from tests.readapi.conftest import BackgroundServer, Plant

RANGE = ("2026-03-01T00:00:00+00:00", "2026-03-04T00:00:00+00:00")


@dataclass(frozen=True)
class Service:
    url: str
    state_url: str
    tenant: str
    other: str
    write_key: str
    read_key: str
    other_write_key: str

    def client(self, key: str | None = None) -> Client:
        return Client(host=self.url, api_key=key or self.write_key)

    def http(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.write_key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def service(plant: Plant, state_url: str, tmp_path_factory) -> Iterator[Service]:
    tenant, other = plant.tenants[:2]
    keys = KeyStore(tmp_path_factory.mktemp("write-keys") / "api_keys.json")
    write_key, _ = keys.add(tenant, write=True, label="alice")
    read_key, _ = keys.add(tenant)
    other_key, _ = keys.add(other, write=True, label="bob")
    app = create_app(plant.root, keys, state_url=state_url)
    with BackgroundServer(app) as server:
        yield Service(server.url, state_url, tenant, other, write_key, read_key, other_key)


def some_spans(client: Client, count: int = 1) -> list[Span]:
    """Computed spans of the tenant's first tag that ended inside the plant's days."""
    tag = client.get_tags()[0].name
    spans = [s for s in client.get_spans(tag, RANGE) if s.raw_end_at is not None]
    return spans[1 : 1 + count]


def unannotated(service: Service) -> Span:
    """A computed span nobody annotated yet (each test takes its own)."""
    with service.client() as client:
        spans = some_spans(client, 40)
        for span in spans:
            if not client.get_span_history(span.id):
                return span
    raise AssertionError("no unannotated span left")


# ---------------------------------------------------------------------- keys


def test_keys_add_write_records_access_and_label(tmp_path: Path):
    path = tmp_path / "keys.json"
    runner = CliRunner()
    added = runner.invoke(
        keys_app, ["add", "acme", "--write", "--label", "lab bench", "--file", str(path)]
    )
    assert added.exit_code == 0, added.output
    plain = runner.invoke(keys_app, ["add", "acme", "--file", str(path)])
    assert plain.exit_code == 0
    listing = runner.invoke(keys_app, ["list", "--file", str(path)]).output.splitlines()
    assert [line.split("\t")[3:] for line in listing][0] == ["read,write", "lab bench"]
    assert listing[1].split("\t")[3] == "read"
    assert listing[1].split("\t")[4].startswith("key-")
    stored = json.loads(path.read_text())["keys"]
    assert [entry["write"] for entry in stored] == [True, False]


def test_keys_from_before_writes_load_as_read_keys(tmp_path: Path):
    path = tmp_path / "keys.json"
    keys = KeyStore(path)
    key, entry = keys.add("acme")
    data = json.loads(path.read_text())
    for item in data["keys"]:
        del item["write"], item["label"]
    path.write_text(json.dumps(data))
    found = KeyStore(path).identify(key)
    assert (found.tenant, found.write, found.writer) == ("acme", False, f"key-{entry.key_id}")


def test_a_bad_label_is_refused(tmp_path: Path):
    result = CliRunner().invoke(
        keys_app, ["add", "acme", "--write", "--label", "a\nb", "--file", str(tmp_path / "k")]
    )
    assert result.exit_code == 2 and "label" in result.output


# ---------------------------------------------------------------------- round trips


def test_update_round_trip_over_http(service: Service):
    span = unannotated(service)
    with service.client() as client:
        first = client.update_span(span, revision=0, labels={"kind": "baseline"}, note="calm")
        assert first.id == span.id and first.value == span.value
        assert first.raw_begin_at == span.raw_begin_at and first.raw_end_at == span.raw_end_at
        meta = first.metadata
        assert meta is not None
        assert (meta["labels"], meta["note"], meta["revision"]) == ({"kind": "baseline"}, "calm", 1)
        assert (meta["origin"], meta["hidden"], meta["updated_by"]) == ("computed", False, "alice")
        assert isinstance(meta["updated_at"], datetime)

        later = span.raw_begin_at + (span.raw_end_at - span.raw_begin_at) / 2
        second = client.update_span(span.id, revision=1, begin_at=later)
        assert second.begin_at == later and second.end_at == span.raw_end_at
        assert second.metadata["labels"] == {"kind": "baseline"}  # only given fields change
        assert second.metadata["computed_begin_at"] == span.raw_begin_at
        assert "computed_end_at" not in second.metadata

        with pytest.raises(Conflict) as stale:
            client.update_span(span.id, revision=1, note="lost?")
        assert stale.value.current.metadata["revision"] == 2
        assert stale.value.current.metadata["note"] == "calm"

        back = client.update_span(span.id, revision=2, begin_at=COMPUTED, hidden=True)
        assert back.begin_at == span.raw_begin_at and back.metadata["hidden"] is True
        assert "computed_begin_at" not in back.metadata

        history = client.get_span_history(span.id)
    assert [c.revision for c in history] == [1, 2, 3]
    assert {c.by for c in history} == {"alice"}
    assert history[0].before["note"] == "" and history[0].after["note"] == "calm"
    assert history[2].before["begin_at"] is not None and history[2].after["begin_at"] is None


def test_reads_show_what_was_written_on_both_transports(service: Service, plant: Plant):
    span = unannotated(service)
    window = (span.raw_begin_at, span.raw_end_at)
    with service.client() as client:
        written = client.update_span(span, revision=0, labels={"kind": "alarm"}, note="seen")
        (read,) = [s for s in client.get_spans(span.tag_name, window) if s.id == span.id]
    assert read.metadata == written.metadata
    assert (read.value, read.raw_begin_at) == (span.value, span.raw_begin_at)
    config = ReadConfig(store=plant.root, state_url=service.state_url)
    with Client(store=config, tenant=service.tenant) as local:
        (local_read,) = [s for s in local.get_spans(span.tag_name, window) if s.id == span.id]
    assert local_read == read


def test_patch_null_bound_means_the_computed_bound(service: Service):
    span = unannotated(service)
    url = f"/v1/annotations/spans/{span.id}"
    moved = (span.raw_end_at - timedelta(microseconds=1)).isoformat()
    first = {
        "revision": 0,
        "tag_name": span.tag_name,
        "raw_begin_at": span.raw_begin_at.isoformat(),
    }
    with service.http() as http:
        answer = http.patch(url, json={**first, "end_at": moved, "note": "n"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["end_at"] == moved
        assert answer.json()["metadata"]["computed_end_at"] == span.raw_end_at.isoformat()
        answer = http.patch(url, json={"revision": 1, "end_at": None})
        assert answer.status_code == 200
        body = answer.json()
    assert body["end_at"] == span.raw_end_at.isoformat() and body["metadata"]["note"] == "n"
    assert "computed_end_at" not in body["metadata"]


def test_create_span_of_ones_own(service: Service):
    with service.client() as client:
        tag = client.get_tags()[0].name
        begin = datetime.fromisoformat("2026-03-02T10:00:00+00:00")
        made = client.create_span(tag, begin, begin + timedelta(minutes=5), labels={"a": "b"})
        assert made.value is None and made.tag_name == tag
        assert (made.begin_at, made.raw_begin_at) == (begin, begin)
        assert made.metadata["origin"] == "user" and made.metadata["revision"] == 1
        changed = client.update_span(made.id, revision=1, note="mine")
        assert changed.metadata["note"] == "mine" and changed.begin_at == begin
        with pytest.raises(UnknownTag):
            client.create_span("no/such/tag", begin, begin + timedelta(minutes=1))
        with pytest.raises(InvalidAnnotation):
            client.create_span(tag, begin, begin)
        assert [c.revision for c in client.get_span_history(made.id)] == [1, 2]
    with service.http() as http:
        answer = http.post(
            "/v1/annotations/spans",
            json={
                "tag_name": tag,
                "begin_at": "2026-03-02T11:00:00Z",
                "end_at": "2026-03-02T12:00Z",
            },
        )
    assert answer.status_code == 201 and answer.json()["metadata"]["updated_by"] == "alice"


def test_store_transport_writes_like_http(service: Service, plant: Plant):
    span = unannotated(service)
    config = ReadConfig(store=plant.root, state_url=service.state_url)
    with Client(store=config, tenant=service.tenant) as local:
        written = local.update_span(span, revision=0, labels={"by": "local"})
        assert (
            written.metadata["updated_by"].endswith("local)")
            or written.metadata["updated_by"] == "local"
        )
        with pytest.raises(Conflict):
            local.update_span(span.id, revision=0, note="stale")
    with service.client() as remote:
        again = remote.update_span(span.id, revision=1, note="from http")
        history = remote.get_span_history(span.id)
    assert again.metadata["labels"] == {"by": "local"}
    assert [c.by for c in history][1] == "alice"


@pytest.mark.parametrize("value", [1.5, float("nan"), float("inf"), -float("inf"), "NaN", None])
def test_a_span_value_survives_the_wire(value: float | str | None):
    at = datetime.fromisoformat("2026-03-02T10:00:00+00:00")
    span = Span(7, "t", value, at, at, at, None, {"revision": 1, "updated_at": at})
    body = json.loads(json.dumps(span_json(span), allow_nan=False))
    assert span_from_json(body) == span
    assert type(span_from_json(body).value) is type(value)


# ---------------------------------------------------------------------- refusals


def test_a_read_key_cannot_write(service: Service):
    span = unannotated(service)
    with service.client(service.read_key) as reader:
        with pytest.raises(PermissionDenied, match="--write"):
            reader.update_span(span, revision=0, note="no")
        with pytest.raises(PermissionDenied):
            reader.create_span(span.tag_name, span.raw_begin_at, span.raw_end_at)
        assert reader.get_span_history(span.id) == []  # reading is allowed
    with service.http(service.read_key) as http:
        answer = http.patch(f"/v1/annotations/spans/{span.id}", json={"revision": 0})
    assert answer.status_code == 403
    assert answer.json()["error"] == "permission_denied"
    assert str(span.id) not in answer.text


def test_another_tenants_span_is_unknown(service: Service):
    span = unannotated(service)
    with service.client() as client:
        client.update_span(span, revision=0, note="ours")
    with service.client(service.other_write_key) as other:
        with pytest.raises(UnknownSpan):
            other.update_span(span.id, revision=1, note="theirs")
        with pytest.raises(UnknownSpan):  # naming the span does not help: its id is ours
            other.update_span(span, revision=0, note="theirs")
        assert other.get_span_history(span.id) == []
    with service.http(service.other_write_key) as http:
        answer = http.patch(f"/v1/annotations/spans/{span.id}", json={"revision": 1})
    assert (answer.status_code, answer.json()["error"]) == (404, "unknown_span")


def test_a_first_annotation_must_name_a_real_span(service: Service):
    span = unannotated(service)
    with service.client() as client:
        with pytest.raises(UnknownSpan, match="raw_begin_at"):
            client.update_span(span.id, revision=0, note="by id alone")
        shifted = Span(
            span.id,
            span.tag_name,
            span.value,
            span.begin_at,
            span.end_at,
            span.raw_begin_at + timedelta(microseconds=1),
            span.raw_end_at,
        )
        with pytest.raises(UnknownSpan):
            client.update_span(shifted, revision=0, note="wrong begin")
        with pytest.raises(UnknownSpan):
            client.update_span(2**63, revision=0, note="too big")
        assert client.get_span_history(span.id) == []


BAD_BODIES = [
    ({"revision": 0, "note": "x", "begin_at": "2026-03-02T10:00:00"}, "invalid_annotation"),
    ({"revision": 0, "labels": {"a": 1}}, "invalid_annotation"),
    ({"revision": 0, "labels": ["a"]}, "invalid_annotation"),
    ({"revision": 0, "note": "x" * 70_000}, "invalid_annotation"),
    ({"revision": 0, "labels": {str(n): "v" for n in range(65)}}, "invalid_annotation"),
    ({"revision": "1"}, "invalid_annotation"),
    ({"revision": 0, "hidden": "yes"}, "invalid_annotation"),
    ({"revision": 0, "note": None}, "invalid_annotation"),
    ({"note": "no revision"}, "invalid_argument"),
    ({"revision": 0, "colour": "red"}, "invalid_argument"),
]


@pytest.mark.parametrize(("body", "code"), BAD_BODIES, ids=lambda v: str(v)[:40])
def test_bad_bodies_are_refused_and_write_nothing(service: Service, body: dict, code: str):
    span = unannotated(service)
    first = {"tag_name": span.tag_name, "raw_begin_at": span.raw_begin_at.isoformat()}
    with service.http() as http:
        answer = http.patch(f"/v1/annotations/spans/{span.id}", json={**first, **body})
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == code
        assert "x" * 100 not in answer.text  # the input is not echoed
        assert http.get(f"/v1/annotations/spans/{span.id}/history").json() == []


def test_bounds_out_of_order_are_refused(service: Service):
    span = unannotated(service)
    with service.client() as client, pytest.raises(InvalidAnnotation, match="before"):
        client.update_span(span, revision=0, begin_at=span.raw_end_at)
    with service.client() as client:
        assert client.get_span_history(span.id) == []


def test_bodies_are_bounded(service: Service):
    with service.http() as http:
        answer = http.patch(
            "/v1/annotations/spans/1", content=b'{"revision": 0, "note": "' + b"x" * 3_000_000
        )
    assert answer.status_code == 413


def test_the_access_route_says_what_a_key_may_do(service: Service):
    for key, may_write in ((service.read_key, False), (service.write_key, True)):
        with service.http(key) as http:
            answer = http.get("/v1/annotations/access")
        assert answer.status_code == 200 and answer.json() == {"write": may_write}
    assert httpx.get(f"{service.url}/v1/annotations/access").status_code == 401


def test_no_key_is_401_before_the_body(service: Service):
    answer = httpx.patch(f"{service.url}/v1/annotations/spans/1", content=b"not json")
    assert answer.status_code == 401


def test_routes_are_documented(service: Service):
    paths = httpx.get(f"{service.url}/openapi.json").json()["paths"]
    assert set(paths["/v1/annotations/spans/{span_id}"]) == {"patch"}
    assert "post" in paths["/v1/annotations/spans"]
    assert "get" in paths["/v1/annotations/spans/{span_id}/history"]
    body = paths["/v1/annotations/spans/{span_id}"]["patch"]["requestBody"]
    assert "revision" in body["content"]["application/json"]["schema"]["properties"]


def test_a_tag_named_like_the_routes_is_still_a_tag(service: Service):
    # /v1/spans/{name} takes any name: the write routes live under /v1/annotations/ instead.
    with service.http() as http:
        answer = http.get(
            "/v1/spans/annotations/spans/1", params={"start": RANGE[0], "end": RANGE[1]}
        )
    assert answer.json()["error"] == "unknown_tag"


# ---------------------------------------------------------------------- configuration, faults


def test_without_a_state_database_writes_say_so(plant: Plant, keys_file: Path):
    keys = KeyStore(keys_file)
    tenant = plant.tenants[0]
    with Client(store=plant.root, tenant=tenant) as local:
        with pytest.raises(AnnotationsNotConfigured, match="TAGFLOW_STATE_URL"):
            local.update_span(1, revision=0, note="x")
    write_keys = KeyStore(keys.path.with_name("write-only.json"))
    key, _ = write_keys.add(tenant, write=True)
    with BackgroundServer(create_app(plant.root, write_keys)) as server:
        answer = httpx.patch(
            f"{server.url}/v1/annotations/spans/1",
            json={"revision": 0},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert (answer.status_code, answer.json()["error"]) == (501, "annotations_not_configured")


def test_a_state_database_that_is_down_is_a_503_in_one_line(plant: Plant, tmp_path: Path):
    keys = KeyStore(tmp_path / "keys.json")
    key, _ = keys.add(plant.tenants[0], write=True)
    down = f"postgresql://tagflow@127.0.0.1:{free_port()}/state"
    with BackgroundServer(create_app(plant.root, keys, state_url=down)) as server:
        with Client(host=server.url, api_key=key) as client:
            tag = client.get_tags()[0].name
            begin = datetime.fromisoformat("2026-03-02T10:00:00+00:00")
            with pytest.raises(StateUnavailable) as error:
                client.create_span(tag, begin, begin + timedelta(minutes=1))
    message = str(error.value)
    assert "\n" not in message and "127.0.0.1" not in message and "tagflow@" not in message
