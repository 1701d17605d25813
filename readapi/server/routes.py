"""The read routes: each parses its parameters into the query the client would have built and
hands it to the key's tenant reader. One dependency authenticates the caller and gathers what
every read shares (the parameters, from the query string or a JSON body, and the format).

Parameters are plain strings parsed by tagflow.readapi.query, so FastAPI never answers with its
own validation errors (which echo the input), and the key is checked before a body is read (the
body's size and time are bounded before that, by tagflow.readapi.server.request_body). Answers are
streamed a batch of rows at a time (tagflow.readapi.wire), never encoded whole in memory."""

from __future__ import annotations

import json
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
from tagflow.readapi.server.memory import releaser
from tagflow.readapi.wire import (
    ARROW_STREAM,
    JSON,
    TENANT_HEADER,
    ipc_chunks,
    json_column_chunks,
    json_record_chunks,
)

_bearer = HTTPBearer(auto_error=False, description="A tenant's API key.")
_BODY = {
    "requestBody": {
        "description": "The query parameters of the GET form as a JSON object; `tag` is a list "
        "of tag names.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}
_SPANS_BODY = {
    "requestBody": {
        "description": "`tag_name` (the tag's name, any length up to the service's cap) and "
        "the query parameters of the GET form as a JSON object.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}

Start = Annotated[str | None, Query(description="Range start, ISO 8601 with offset.")]
End = Annotated[str | None, Query(description="Range end (exclusive), ISO 8601.")]
Format = Annotated[str | None, Query(description="'json' (default) or 'arrow'.")]
AllowSource = Annotated[str | None, Query(description="false: refuse days not materialised.")]
Tags = Annotated[
    list[str] | None,
    Query(
        alias="tag",
        description="Tag name; repeat the parameter for several tags (all tags when absent).",
    ),
]
Limit = Annotated[str | None, Query(description="At most this many spans, newest first.")]
Width = Annotated[str | None, Query(description="Bucket width, e.g. 15m, 1h, 90s, 1d.")]
Offset = Annotated[str | None, Query(description="Bucket alignment offset, e.g. 30m.")]
Aggregate = Annotated[
    str | None, Query(description="average (time-weighted), min, max, first, last, count.")
]
BucketFunction = Annotated[str | None, Query(description="Only 'locf'.")]


@dataclass(frozen=True)
class Call:
    """An authenticated read: the key's tenant reader, its parameters and the answer format."""

    reader: TenantReader
    params: dict[str, Any]
    arrow: bool

    def answer(self, query: q.Query, wide: bool = False) -> Response:
        table = self.reader.read(query)
        return _respond(table, self.arrow, wide)


def _authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> TenantReader:
    """The reader of the tenant the bearer key opens; 401 with one body otherwise."""
    service = request.app.state.read_service
    claimed = request.headers.get(TENANT_HEADER)
    if claimed is not None:
        try:
            validate_tenant_name(claimed)
        except InvalidName:
            raise AuthenticationFailed(UNAUTHORIZED_MESSAGE) from None
    key = credentials.credentials if credentials is not None else None
    return service.engine.reader(service.keys.verify(key, claimed))


async def _call(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    start: Start = None,
    end: End = None,
    allow_source: AllowSource = None,
    format: Format = None,
) -> Call:
    """The one dependency of every read route (the declared parameters document the query
    string; the values are read below, from the query string or, for POST, the body)."""
    reader = _authenticate(request, credentials)
    if request.method == "POST":
        params = await _json_object(request)
    else:
        params = dict(request.query_params)
        if "tag" in request.query_params:
            params["tag"] = request.query_params.getlist("tag")
    return Call(reader, params, _wants_arrow(request, q.text(params, "format")))


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


def _wants_arrow(request: Request, format: str | None) -> bool:
    if format is not None:
        if format not in ("json", "arrow"):
            raise InvalidArgument("format must be 'json' or 'arrow'")
        return format == "arrow"
    return ARROW_STREAM in request.headers.get("accept", "")


def _respond(table: pa.Table, arrow: bool, wide: bool) -> Response:
    if arrow:
        chunks, media_type = ipc_chunks(table), ARROW_STREAM
    else:
        chunks = json_column_chunks(table) if wide else json_record_chunks(table)
        media_type = JSON
    return StreamingResponse(releaser.after(chunks), media_type=media_type)


ReadCall = Annotated[Call, Depends(_call)]
router = APIRouter(prefix="/v1", tags=["read"])


@router.get("/tags")
def tags(call: ReadCall) -> Response:
    """Tags with at least one transition in [start, end); all tags without a range."""
    return call.answer(q.TagsQuery.from_params(call.params))


@router.get("/spans/{tag_name:path}")
def spans(call: ReadCall, tag_name: str, limit: Limit = None) -> Response:
    """Spans (runs of one value) of a tag intersecting [start, end), newest first."""
    return call.answer(q.SpansQuery.from_params(tag_name, call.params))


@router.post("/spans", openapi_extra=_SPANS_BODY)
def spans_post(call: ReadCall) -> Response:
    """The spans call with a JSON body (`tag_name` and the query parameters), for a tag name
    too long for a URL."""
    return call.answer(q.SpansQuery.from_body(call.params))


@router.get("/metrics/data")
def metric_data(call: ReadCall, tag: Tags = None) -> Response:
    """Every transition of the tags in [start, end), sorted by time."""
    return call.answer(q.MetricDataQuery.from_params(call.params))


@router.get("/metrics/samples")
def sample_metric_data(
    call: ReadCall,
    bucket_width: Width = None,
    bucket_offset: Offset = None,
    aggregate_function: Aggregate = None,
    bucket_function: BucketFunction = None,
    tag: Tags = None,
) -> Response:
    """LOCF samples, wide: `time` (bucket start) + one column per tag."""
    return _buckets(call, q.Sampling.SAMPLES)


@router.get("/metrics/derivative")
def derivative(
    call: ReadCall,
    bucket_width: Width = None,
    bucket_offset: Offset = None,
    aggregate_function: Aggregate = None,
    tag: Tags = None,
) -> Response:
    """Per-second change of the sampled aggregate between consecutive buckets."""
    return _buckets(call, q.Sampling.DERIVATIVE)


@router.get("/metrics/counter_rate")
def counter_rate(
    call: ReadCall, bucket_width: Width = None, bucket_offset: Offset = None, tag: Tags = None
) -> Response:
    """Counter increase per second in each bucket; a drop is a reset, not a negative rate."""
    return _buckets(call, q.Sampling.COUNTER_RATE)


@router.post("/metrics/{kind}", openapi_extra=_BODY)
def metrics_post(call: ReadCall, kind: str) -> Response:
    """The metrics calls with a JSON body (same field names as the query parameters, `tag` a
    list), for tag lists too long for a URL."""
    if kind == "data":
        return call.answer(q.MetricDataQuery.from_params(call.params))
    if kind not in set(q.Sampling):
        raise InvalidArgument("unknown metrics call; use data, samples, derivative or counter_rate")
    return _buckets(call, q.Sampling(kind))


def _buckets(call: Call, sampling: q.Sampling) -> Response:
    return call.answer(q.BucketQuery.from_params(sampling, call.params), wide=True)


@router.get("/coverage")
def coverage(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> dict[str, Any]:
    """The key's tenant's first and last materialised days (null when none) and how many
    days are materialised, so that a viewer can open where there is data. Days only: never
    where they are stored."""
    tenant = _authenticate(request, credentials).tenant
    days = request.app.state.read_service.engine.coverage.days(tenant)
    first, last = (min(days).isoformat(), max(days).isoformat()) if days else (None, None)
    return {"first_day": first, "last_day": last, "days": len(days)}
