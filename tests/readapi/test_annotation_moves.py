"""Moving a detached annotation (DESIGN §9) through both transports: onto another computed span
or onto a span of the person's own, what the old span keeps, the refusals (stale revision, a
target with an annotation of its own, a span moved already, another tenant's, bad bodies, a
read key, oversized bodies); and the OpenAPI document naming every annotation answer."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
import pytest

from tagflow.annotations import AnnotationStore, ComputedSpan
from tagflow.readapi import Client, Conflict, InvalidAnnotation, PermissionDenied, UnknownSpan
from tagflow.readapi.engine.config import ReadConfig
from tests.readapi import test_annotation_writes as writes
from tests.readapi.conftest import Plant
from tests.readapi.test_annotation_writes import Service, unannotated

# The write tests' service, one for this module too (on the shared state_url fixture).
service = writes.service

# Where the detached annotations' span was: a time the plant's days hold.
BEGIN = datetime.fromisoformat("2026-03-02T07:00:00+00:00")


def detached(service: Service, tenant: str | None = None, hours: float = 1.0) -> int:
    """The id of an annotation (revision 1, labels and a note) of a computed span the datasets
    do not hold: what late data leaves behind."""
    span_id = int(uuid.uuid4().int % 2**40) + 10**12
    gone = ComputedSpan("gone/tag", BEGIN, BEGIN + timedelta(hours=hours))
    AnnotationStore.at(service.state_url).update(
        tenant or service.tenant,
        span_id,
        revision=0,
        by="alice",
        computed=gone,
        labels={"kind": "alarm"},
        note="kept",
    )
    return span_id


def test_a_detached_annotation_moves_onto_another_computed_span(service: Service):
    old = detached(service)
    target = unannotated(service)
    with service.client() as client:
        moved = client.move_span_annotation(old, revision=1, to=target)
        assert (moved.id, moved.value, moved.raw_begin_at) == (
            target.id,
            target.value,
            target.raw_begin_at,
        )
        meta = moved.metadata
        assert (meta["labels"], meta["note"], meta["origin"]) == (
            {"kind": "alarm"},
            "kept",
            "computed",
        )
        assert (meta["revision"], meta["updated_by"]) == (1, "alice")
        history = client.get_span_history(old)
        (read,) = [
            s
            for s in client.get_spans(target.tag_name, (target.raw_begin_at, target.raw_end_at))
            if s.id == target.id
        ]
    assert read.metadata == meta
    assert [c.revision for c in history] == [1, 2]
    assert history[1].after["moved_to"] == target.id and history[1].after["hidden"] is True
    assert history[1].after["note"] == "kept"  # the old record stays whole


def test_a_detached_annotation_becomes_a_span_of_ones_own(service: Service):
    old = detached(service, hours=2)
    with service.client() as client:
        kept = client.move_span_annotation(old, revision=1)
        assert kept.value is None and kept.tag_name == "gone/tag"
        assert (kept.begin_at, kept.end_at) == (BEGIN, BEGIN + timedelta(hours=2))
        assert kept.metadata["origin"] == "user" and kept.metadata["note"] == "kept"
        other = detached(service)
        chosen = client.move_span_annotation(
            other, revision=1, begin_at=BEGIN, end_at=BEGIN + timedelta(minutes=5)
        )
        assert chosen.end_at == BEGIN + timedelta(minutes=5)
        assert [c.after["moved_to"] for c in client.get_span_history(other)][-1] == chosen.id


def test_the_store_transport_moves_like_http(service: Service, plant: Plant):
    old = detached(service)
    target = unannotated(service)
    config = ReadConfig(store=plant.root, state_url=service.state_url)
    with Client(store=config, tenant=service.tenant) as local:
        moved = local.move_span_annotation(old, revision=1, to=target)
    with service.client() as remote:
        (read,) = [
            s
            for s in remote.get_spans(target.tag_name, (target.raw_begin_at, target.raw_end_at))
            if s.id == target.id
        ]
    assert moved.metadata == {**read.metadata, "updated_by": moved.metadata["updated_by"]}
    assert moved.metadata["labels"] == {"kind": "alarm"}


def test_refused_moves_change_nothing(service: Service):
    old = detached(service)
    target = unannotated(service)
    with service.client() as client:
        with pytest.raises(Conflict) as stale:
            client.move_span_annotation(old, revision=0, to=target)
        assert stale.value.current.id == old and stale.value.current.metadata["revision"] == 1
        annotated = client.update_span(target, revision=0, note="its own")
        with pytest.raises(Conflict) as taken:
            client.move_span_annotation(old, revision=1, to=target)
        assert taken.value.current.id == target.id
        assert taken.value.current.metadata["note"] == "its own"
        with pytest.raises(UnknownSpan):
            client.move_span_annotation(10**12 - 1, revision=1)
        with pytest.raises(InvalidAnnotation):
            client.move_span_annotation(old, revision=1, begin_at=BEGIN, end_at=BEGIN)
        assert [c.revision for c in client.get_span_history(old)] == [1]
        assert client.get_span_history(target.id)[-1].revision == annotated.metadata["revision"]
        client.move_span_annotation(old, revision=1)
        with pytest.raises(InvalidAnnotation, match="already moved"):
            client.move_span_annotation(old, revision=2)
    with service.client(service.read_key) as reader, pytest.raises(PermissionDenied):
        reader.move_span_annotation(detached(service), revision=1)
    theirs = detached(service, tenant=service.other)
    with service.client() as client, pytest.raises(UnknownSpan):
        client.move_span_annotation(theirs, revision=1)


BAD_MOVES = [
    ({"revision": 1, "to_span_id": 5}, "invalid_annotation"),  # not named as get_spans answered
    ({"revision": 1, "to_tag_name": "t"}, "invalid_annotation"),
    ({"revision": 1, "to_span_id": "5"}, "invalid_annotation"),
    ({"revision": 1, "begin_at": "2026-03-02T10:00:00"}, "invalid_annotation"),  # naive
    ({"revision": -1}, "invalid_annotation"),
    ({"to_span_id": 5}, "invalid_argument"),
    ({"revision": 1, "colour": "red"}, "invalid_argument"),
]


@pytest.mark.parametrize(("body", "code"), BAD_MOVES, ids=lambda v: str(v)[:40])
def test_bad_move_bodies_are_refused(service: Service, body: dict, code: str):
    old = detached(service)
    with service.http() as http:
        answer = http.post(f"/v1/annotations/spans/{old}/move", json=body)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == code
        history = http.get(f"/v1/annotations/spans/{old}/history").json()
    assert [change["revision"] for change in history] == [1]


def test_move_bodies_are_bounded_and_checked_after_the_key(service: Service):
    with service.http() as http:
        answer = http.post(
            "/v1/annotations/spans/1/move", content=b'{"revision": 1, "x": "' + b"x" * 3_000_000
        )
    assert answer.status_code == 413
    assert httpx.post(f"{service.url}/v1/annotations/spans/1/move", content=b"{").status_code == 401


def test_a_tag_named_like_the_move_route_is_still_a_tag(service: Service):
    with service.http() as http:
        answer = http.get(
            "/v1/spans/annotations/spans/1/move",
            params={"start": "2026-03-01T00:00:00Z", "end": "2026-03-02T00:00:00Z"},
        )
    assert answer.json()["error"] == "unknown_tag"


def test_the_openapi_document_names_every_annotation_answer(service: Service):
    document = httpx.get(f"{service.url}/openapi.json").json()
    paths, schemas = document["paths"], document["components"]["schemas"]

    def answer(path: str, method: str, status: str) -> str:
        content = paths[path][method]["responses"][status]["content"]["application/json"]
        schema = content["schema"]
        return (schema.get("items") or schema)["$ref"].rsplit("/", 1)[-1]

    assert answer("/v1/annotations/spans/{span_id}", "patch", "200") == "SpanAnswer"
    assert answer("/v1/annotations/spans/{span_id}", "patch", "409") == "ConflictAnswer"
    assert answer("/v1/annotations/spans", "post", "201") == "SpanAnswer"
    assert answer("/v1/annotations/spans/{span_id}/move", "post", "200") == "SpanAnswer"
    assert answer("/v1/annotations/spans/{span_id}/move", "post", "403") == "ErrorAnswer"
    assert answer("/v1/annotations/spans/{span_id}/history", "get", "200") == "SpanChangeAnswer"
    assert answer("/v1/annotations/access", "get", "200") == "AccessAnswer"
    body = paths["/v1/annotations/spans/{span_id}/move"]["post"]["requestBody"]
    fields = body["content"]["application/json"]["schema"]["properties"]
    assert {"revision", "to_span_id", "to_tag_name", "to_raw_begin_at"} <= set(fields)
    assert {"labels", "note", "revision", "hidden", "origin"} <= set(
        schemas["SpanMetadata"]["properties"]
    )
    assert schemas["ConflictAnswer"]["properties"]["current"]["$ref"].endswith("/SpanAnswer")


def test_the_documented_span_answer_is_what_a_write_answers(service: Service):
    from tagflow.readapi.server.annotation_models import SpanAnswer, SpanChangeAnswer

    span = unannotated(service)
    with service.http() as http:
        body = {
            "revision": 0,
            "tag_name": span.tag_name,
            "raw_begin_at": span.raw_begin_at.isoformat(),
            "end_at": (span.raw_end_at - timedelta(seconds=1)).isoformat(),
            "labels": {"a": "b"},
        }
        written = http.patch(f"/v1/annotations/spans/{span.id}", json=body).json()
        history = http.get(f"/v1/annotations/spans/{span.id}/history").json()
    parsed = SpanAnswer.model_validate(written)
    assert parsed.metadata is not None and parsed.metadata.computed_end_at == span.raw_end_at
    assert SpanAnswer.model_fields.keys() == written.keys()
    assert [SpanChangeAnswer.model_validate(c).revision for c in history] == [1]
