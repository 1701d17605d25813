"""The read routes: each takes its call's parameters (tagflow.readapi.server.params: one model
per call, the GET query string and the POST body alike), builds the query the client would
have built and hands it to the key's tenant reader.

One dependency authenticates the caller before anything else is read: FastAPI resolves it
before a route's query parameters, and a POST's body is read only after it (the body's size
and time are bounded before that, by tagflow.readapi.server.request_body). Answers are streamed
a batch of rows at a time (tagflow.readapi.wire), never encoded whole in memory."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import pyarrow as pa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tagflow.errors import AuthenticationFailed, InvalidArgument, InvalidName
from tagflow.names import validate_tenant_name
from tagflow.readapi import query as q
from tagflow.readapi.engine.reader import TenantReader
from tagflow.readapi.errors import UNAUTHORIZED_MESSAGE
from tagflow.readapi.models import ANNOTATIONS_HEADER, annotations_state
from tagflow.readapi.server.keys import KeyEntry
from tagflow.readapi.server.memory import releaser
from tagflow.readapi.server.params import (
    BUCKET_PARAMS,
    CounterRateParams,
    DerivativeParams,
    MetricDataParams,
    ReadParams,
    SamplesParams,
    SpanAnnotationsParams,
    SpansBody,
    SpansParams,
)
from tagflow.readapi.wire import (
    ARROW_STREAM,
    JSON,
    TENANT_HEADER,
    ipc_chunks,
    json_column_chunks,
    json_columnar_chunks,
    json_record_chunks,
    sent_whole,
)

_bearer = HTTPBearer(auto_error=False, description="A tenant's API key.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _body_of(model: type[ReadParams], description: str) -> dict[str, Any]:
    """OpenAPI's request body of a POST form: the call's parameters as a JSON object (the body
    is read by the route itself, after the key is checked)."""
    schema = model.model_json_schema()
    content = {"application/json": {"schema": schema}}
    return {"requestBody": {"description": description, "required": True, "content": content}}


@dataclass(frozen=True)
class AuthenticatedRead:
    """A read whose key was checked: the key's tenant reader and the request it came with."""

    reader: TenantReader
    request: Request

    def answer(
        self, params: ReadParams, query: Callable[[], q.Query], wide: bool = False
    ) -> Response:
        """The answer to `query()` in the format the request asks for (checked first)."""
        answer_format = params.answer_format(self.request.headers.get("accept", ""))
        table = self.reader.read(query())
        response = _respond(table, answer_format, wide)
        # Spans answers say whether annotations were merged (the JSON form has no envelope).
        state = annotations_state(table)
        if state is not None:
            response.headers[ANNOTATIONS_HEADER] = state
        return response


def key_entry(request: Request, credentials: Credentials) -> KeyEntry:
    """The entry of the bearer key (its tenant, whether it may write, its label); 401 with
    one body for every reason otherwise."""
    claimed = request.headers.get(TENANT_HEADER)
    if claimed is not None:
        try:
            validate_tenant_name(claimed)
        except InvalidName:
            raise AuthenticationFailed(UNAUTHORIZED_MESSAGE) from None
    key = credentials.credentials if credentials is not None else None
    return request.app.state.read_service.keys.identify(key, claimed)


def _authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> TenantReader:
    """The reader of the tenant the bearer key opens; 401 with one body otherwise."""
    tenant = key_entry(request, credentials).tenant
    return request.app.state.read_service.engine.reader(tenant)


def _read(request: Request, credentials: Credentials) -> AuthenticatedRead:
    """The one dependency of every read route: FastAPI resolves it before the route's query
    parameters and before its body (below)."""
    return AuthenticatedRead(_authenticate(request, credentials), request)


Read = Annotated[AuthenticatedRead, Depends(_read)]


async def _body(read: Read) -> dict[str, Any]:
    """A POST form's JSON object, read only once the key is checked."""
    return await _json_object(read.request)


JsonBody = Annotated[dict[str, Any], Depends(_body)]


async def _json_object(request: Request) -> dict[str, Any]:
    # Read outside the try: a body over the size or time limit is its own error, not bad JSON.
    text = await request.body()
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):  # deeply nested arrays exhaust the parser's stack
        raise InvalidArgument("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return body


def _respond(table: pa.Table, answer_format: str, wide: bool) -> Response:
    arrow = answer_format == "arrow"
    if arrow:
        chunks, media_type = ipc_chunks(table), ARROW_STREAM
    elif answer_format == "columns":
        chunks, media_type = json_columnar_chunks(table), JSON
    else:
        chunks = json_column_chunks(table) if wide else json_record_chunks(table)
        media_type = JSON
    if sent_whole(table, arrow):
        # Encoded here, on the route's worker thread, and sent in one piece: streaming costs a
        # hop to a worker thread per chunk (and one to end), which small answers felt most.
        body = b"".join(chunks)
        releaser.request()
        return Response(body, media_type=media_type)
    return StreamingResponse(releaser.after(chunks), media_type=media_type)


router = APIRouter(prefix="/v1", tags=["read"])


@router.get("/tags")
def tags(read: Read, params: Annotated[ReadParams, Query()]) -> Response:
    """Tags with at least one transition in [start, end); all tags without a range."""
    return read.answer(params, params.query)


@router.get("/spans/{tag_name:path}")
def spans(read: Read, tag_name: str, params: Annotated[SpansParams, Query()]) -> Response:
    """Spans (runs of one value) of a tag intersecting [start, end), newest first."""
    return read.answer(params, lambda: params.spans_query(tag_name))


@router.post("/spans", openapi_extra=_body_of(SpansBody, "`tag_name` and the GET parameters."))
def spans_post(read: Read, body: JsonBody) -> Response:
    """The spans call with a JSON body (`tag_name` and the query parameters), for a tag name
    too long for a URL."""
    params = SpansBody.of_body(body)
    return read.answer(params, params.query)


@router.get("/annotations")
def span_annotations(read: Read, params: Annotated[SpanAnnotationsParams, Query()]) -> Response:
    """The tenant's span annotations whose bounds meet [start, end) (all without a range), as
    spans with their metadata, newest first; `detached=true`: only those of computed spans no
    longer computed."""
    return read.answer(params, params.query)


@router.get("/metrics/data")
def metric_data(read: Read, params: Annotated[MetricDataParams, Query()]) -> Response:
    """Every transition of the tags in [start, end), sorted by time."""
    return read.answer(params, params.query)


@router.get("/metrics/samples")
def sample_metric_data(read: Read, params: Annotated[SamplesParams, Query()]) -> Response:
    """LOCF samples, wide: `time` (bucket start) + one column per tag."""
    return read.answer(params, params.query, wide=True)


@router.get("/metrics/derivative")
def derivative(read: Read, params: Annotated[DerivativeParams, Query()]) -> Response:
    """Per-second change of the sampled aggregate between consecutive buckets."""
    return read.answer(params, params.query, wide=True)


@router.get("/metrics/counter_rate")
def counter_rate(read: Read, params: Annotated[CounterRateParams, Query()]) -> Response:
    """Counter increase per second in each bucket; a drop is a reset, not a negative rate."""
    return read.answer(params, params.query, wide=True)


_METRICS_BODY = _body_of(
    SamplesParams, "The GET parameters of the call (`tag` a list); each call reads only its own."
)


@router.post("/metrics/{kind}", openapi_extra=_METRICS_BODY)
def metrics_post(read: Read, body: JsonBody, kind: str) -> Response:
    """The metrics calls with a JSON body (same field names as the query parameters, `tag` a
    list), for tag lists too long for a URL."""
    if kind == "data":
        data = MetricDataParams.of_body(body)
        return read.answer(data, data.query)
    if kind not in set(q.Sampling):
        raise InvalidArgument("unknown metrics call; use data, samples, derivative or counter_rate")
    params = BUCKET_PARAMS[q.Sampling(kind)].of_body(body)
    return read.answer(params, params.query, wide=True)


@router.get("/coverage")
def coverage(request: Request, credentials: Credentials) -> dict[str, Any]:
    """The key's tenant's first and last materialised days (null when none) and how many
    days are materialised, so that a viewer can open where there is data. Days only: never
    where they are stored."""
    tenant = _authenticate(request, credentials).tenant
    days = request.app.state.read_service.engine.coverage.days(tenant)
    first, last = (min(days).isoformat(), max(days).isoformat()) if days else (None, None)
    return {"first_day": first, "last_day": last, "days": len(days)}
