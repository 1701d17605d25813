"""The span annotation routes (DESIGN §9), under /v1/annotations/ so that no tag name (which
/v1/spans/{name} takes whole, slashes included) can be mistaken for one of them:

- `PATCH /v1/annotations/spans/{span_id}`: change the given fields from a revision;
- `POST /v1/annotations/spans`: add a span of a person's own (201);
- `POST /v1/annotations/spans/{span_id}/move`: move its annotation (a detached one) onto
  another computed span, or onto a new span of the person's own;
- `GET /v1/annotations/spans/{span_id}/history`: every change, oldest first;
- `GET /v1/annotations/access`: whether the key may write (what the /ui page asks first).

A write needs a key added with `--write` (a read key gets 403 `permission_denied`, whatever
the span); the key's label is recorded as the writer. The key is checked before the body is
read, and the body is bounded like every request's (tagflow.readapi.server.request_body). A
write answers with the resulting Span; a stale revision is 409 `conflict` with the span's
current record in `current`. Each write is one transaction of the state database: acknowledged
means committed; a write that fails (503 `state_unavailable`, or cut off) left nothing.
OpenAPI documents each answer (tagflow.readapi.server.annotation_models)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from tagflow.errors import Conflict
from tagflow.readapi.annotation_wire import change_json, span_json
from tagflow.readapi.engine.writes import SpanWrites
from tagflow.readapi.errors import PermissionDenied, wire_error
from tagflow.readapi.server.annotation_models import (
    WRITE_ERRORS,
    AccessAnswer,
    ErrorAnswer,
    SpanAnswer,
    SpanChangeAnswer,
)
from tagflow.readapi.server.keys import KeyEntry
from tagflow.readapi.server.params import SpanCreateBody, SpanMoveBody, SpanUpdateBody
from tagflow.readapi.server.routes import Credentials, _json_object, key_entry

_READ_ONLY = (
    "this API key may only read; writing span annotations needs a key added with "
    "`tagflow keys add TENANT --write`"
)


def _writes(request: Request, credentials: Credentials, write: bool) -> SpanWrites:
    entry = key_entry(request, credentials)
    if write and not entry.write:
        raise PermissionDenied(_READ_ONLY)
    return SpanWrites(request.app.state.read_service.engine, entry.tenant, entry.writer)


def _writer(request: Request, credentials: Credentials) -> SpanWrites:
    return _writes(request, credentials, write=True)


def _reader(request: Request, credentials: Credentials) -> SpanWrites:
    return _writes(request, credentials, write=False)


Writer = Annotated[SpanWrites, Depends(_writer)]
Reader = Annotated[SpanWrites, Depends(_reader)]


async def _body(request: Request, writer: Writer) -> dict[str, Any]:
    """The JSON object of a write, read only once the key is checked."""
    return await _json_object(request)


Body = Annotated[dict[str, Any], Depends(_body)]


def _documented(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI's request body of a write (the route reads it itself, after the key)."""
    content = {"application/json": {"schema": model.model_json_schema()}}
    return {"requestBody": {"required": True, "content": content}}


def _conflict(error: Conflict) -> JSONResponse:
    status, code = wire_error(error)
    body = {"error": code, "message": str(error), "current": span_json(error.current)}
    return JSONResponse(body, status_code=status)


router = APIRouter(prefix="/v1/annotations", tags=["annotations"])


@router.patch(
    "/spans/{span_id}",
    openapi_extra=_documented(SpanUpdateBody),
    response_model=SpanAnswer,
    responses=WRITE_ERRORS,
)
def update_span(span_id: int, writer: Writer, body: Body) -> Any:
    """Change the given fields of span `span_id`, starting from `revision`; answers the
    resulting span. 409 `conflict` (with `current`) when `revision` is stale."""
    params = SpanUpdateBody.of_body(body)
    try:
        span = writer.update(
            span_id,
            revision=params.revision,
            tag_name=params.tag_name,
            raw_begin_at=params.raw_begin_at,
            **params.changes(),
        )
    except Conflict as error:
        return _conflict(error)
    # A JSONResponse as is: FastAPI would otherwise walk the dict again (jsonable_encoder).
    return JSONResponse(span_json(span))


@router.post(
    "/spans",
    status_code=201,
    openapi_extra=_documented(SpanCreateBody),
    response_model=SpanAnswer,
    responses=WRITE_ERRORS,
)
def create_span(writer: Writer, body: Body) -> Any:
    """Add a span of a person's own on one of the tenant's tags; answers it (revision 1)."""
    params = SpanCreateBody.of_body(body)
    span = writer.create(
        params.tag_name, params.begin_at, params.end_at, labels=params.labels, note=params.note
    )
    return JSONResponse(span_json(span), status_code=201)


@router.post(
    "/spans/{span_id}/move",
    openapi_extra=_documented(SpanMoveBody),
    response_model=SpanAnswer,
    responses=WRITE_ERRORS,
)
def move_span_annotation(span_id: int, writer: Writer, body: Body) -> Any:
    """Move span `span_id`'s annotation (a detached one, typically), starting from `revision`,
    onto the computed span `to_span_id` (named with `to_tag_name` and `to_raw_begin_at`, as
    get_spans answered it; it must have no annotation of its own), or without one onto a new
    span of the person's own (`begin_at` / `end_at`, default: the bounds it covers). Answers
    the span that now carries it; the old span stays, hidden, its `moved_to` saying where."""
    params = SpanMoveBody.of_body(body)
    try:
        span = writer.move(
            span_id,
            revision=params.revision,
            to_span_id=params.to_span_id,
            to_tag_name=params.to_tag_name,
            to_raw_begin_at=params.to_raw_begin_at,
            begin_at=params.begin_at,
            end_at=params.end_at,
        )
    except Conflict as error:
        return _conflict(error)
    return JSONResponse(span_json(span))


_READ_ERRORS: dict[int | str, dict[str, Any]] = {
    code: WRITE_ERRORS[code] for code in (401, 404, 503)
}


@router.get(
    "/spans/{span_id}/history", response_model=list[SpanChangeAnswer], responses=_READ_ERRORS
)
def span_history(span_id: int, reader: Reader) -> Any:
    """Every change of span `span_id`, oldest first ([] for a span nobody changed)."""
    return JSONResponse([change_json(change) for change in reader.history(span_id)])


@router.get("/access", response_model=AccessAnswer, responses={401: {"model": ErrorAnswer}})
def access(key: Annotated[KeyEntry, Depends(key_entry)]) -> Any:
    """What the key may do with annotations: `{"write": true}` for a key added with
    `--write`, else false (reads are open to every key of the tenant)."""
    return JSONResponse({"write": key.write})
