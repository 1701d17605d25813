"""The HTTP read service (FastAPI): the client's calls over HTTP, as JSON or Arrow IPC.

Every data endpoint needs `Authorization: Bearer <key>`; the key decides the tenant (an
optional X-Tagflow-Tenant header must then name that same tenant). Nothing from a request
becomes a path or SQL text: the tenant comes from the keys file, tag names are only compared
with the tenant's tag catalogue, and times and widths are parsed into values. Errors are
typed JSON bodies without paths, SQL, keys or stack traces.
"""

from __future__ import annotations

import logging
import os
from http import HTTPStatus
from typing import Annotated, Any

import pyarrow as pa
from fastapi import Body as FastApiBody
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException
from upath import UPath

from tagflow.errors import AuthenticationFailed, InvalidName, TagflowError
from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.names import validate_tenant_name
from tagflow.readapi.coverage import DEFAULT_TTL_S, CoverageIndex, TagCatalogue
from tagflow.readapi.engine import DEFAULT_MAX_SOURCE_DAYS, TenantReader
from tagflow.readapi.errors import UNAUTHORIZED_MESSAGE, InvalidArgument, wire_error
from tagflow.readapi.keys import KeyStore
from tagflow.readapi.source_fallback import DEFAULT_SOURCE_TIMEOUT_S
from tagflow.readapi.wire import ARROW_STREAM, TENANT_HEADER, encode_ipc, json_columns, json_records
from tagflow.settings import Settings
from tagflow.source.embedded import resolve_source_url
from tagflow.time_range import TimeRange, parse_duration, parse_time_range, parse_width

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="A tenant's API key.")
_TAGS_DOC = "Tag name; repeat the parameter for several tags (all tags when absent)."
_BODY_DOC = "The query parameters of the GET form as a JSON object; `tag` is a list of tag names."


class ReadService:
    """Shared state of the service: the store, the coverage and tag caches, the keys."""

    def __init__(
        self,
        store: DatasetStore,
        keys: KeyStore,
        source_url: str | None = None,
        ttl_s: float = DEFAULT_TTL_S,
        max_source_days: int = DEFAULT_MAX_SOURCE_DAYS,
        source_timeout_s: float = DEFAULT_SOURCE_TIMEOUT_S,
    ) -> None:
        self.store = store
        self.keys = keys
        self.source_url = source_url or None
        self.coverage = CoverageIndex(store, ttl_s)
        self.catalogue = TagCatalogue(store, self.source_url, ttl_s, source_timeout_s)
        self.max_source_days = max_source_days
        self.source_timeout_s = source_timeout_s

    def reader(self, tenant: str) -> TenantReader:
        return TenantReader(
            self.store,
            tenant,
            self.coverage,
            self.catalogue,
            self.source_url,
            self.max_source_days,
            self.source_timeout_s,
        )

    def scrub(self, message: str) -> str:
        """Defence in depth: errors are written without paths or URLs, but should one ever
        carry the store root or the source URL, it is cut out here."""
        for secret in (str(self.store.root), self.store.root.path, self.source_url):
            if secret and len(secret) > 3:
                message = message.replace(secret, "<hidden>")
        return message


def _error_response(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def _wants_arrow(request: Request, format: str | None) -> bool:
    if format is not None:
        if format not in ("json", "arrow"):
            raise InvalidArgument("format must be 'json' or 'arrow'")
        return format == "arrow"
    return ARROW_STREAM in request.headers.get("accept", "")


def _respond(table: pa.Table, arrow: bool, wide: bool = False) -> Response:
    if arrow:
        return Response(encode_ipc(table), media_type=ARROW_STREAM)
    return JSONResponse(json_columns(table) if wide else json_records(table))


def _time_range(start: str | None, end: str | None) -> TimeRange | None:
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise InvalidArgument("give both start and end, or neither")
    return parse_time_range((start, end))


def _flag(value: str | None, name: str) -> bool:
    if value is None:
        return True
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise InvalidArgument(f"{name} must be true or false")


def _text(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    raise InvalidArgument(f"{name} must be a string")


def _tag_list(value: object) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument("tag must be a list of tag names")
    return value


def _limit(value: str | None) -> int | None:
    if value is None:
        return None
    # isascii: str.isdigit() also accepts '²' and other digits int() refuses.
    if not (value.isascii() and value.isdigit()) or len(value) > 9 or int(value) < 1:
        raise InvalidArgument("limit must be a positive integer")
    return int(value)


def _authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TenantReader:
    """The reader of the tenant the bearer key opens; 401 with one body otherwise."""
    service: ReadService = request.app.state.read_service
    claimed = request.headers.get(TENANT_HEADER)
    if claimed is not None:
        try:
            validate_tenant_name(claimed)
        except InvalidName:
            raise AuthenticationFailed(UNAUTHORIZED_MESSAGE) from None
    key = credentials.credentials if credentials is not None else None
    return service.reader(service.keys.verify(key, claimed))


# Parameters are plain strings parsed by readapi.time_range and friends, so FastAPI never
# answers with its own validation errors (which echo the input) and auth always runs first.
Reader = Annotated[TenantReader, Depends(_authenticate)]
Start = Annotated[str | None, Query(description="Range start, ISO 8601 with offset.")]
End = Annotated[str | None, Query(description="Range end (exclusive), ISO 8601.")]
Format = Annotated[str | None, Query(description="'json' (default) or 'arrow'.")]
AllowSource = Annotated[str | None, Query(description="false: refuse days not materialised.")]
Tags = Annotated[list[str] | None, Query(alias="tag", description=_TAGS_DOC)]
Limit = Annotated[str | None, Query(description="At most this many spans, newest first.")]
Width = Annotated[str | None, Query(description="Bucket width, e.g. 15m, 1h, 90s, 1d.")]
Offset = Annotated[str | None, Query(description="Bucket alignment offset, e.g. 30m.")]
Aggregate = Annotated[
    str | None, Query(description="average (time-weighted), min, max, first, last, count.")
]
BucketFunction = Annotated[str | None, Query(description="Only 'locf'.")]
Body = Annotated[dict[str, Any], FastApiBody(description=_BODY_DOC)]


def create_app(
    store: str | os.PathLike[str] | UPath | DatasetStore,
    keys: KeyStore | str | os.PathLike[str],
    source_url: str | None = None,
    ttl_s: float = DEFAULT_TTL_S,
    max_source_days: int = DEFAULT_MAX_SOURCE_DAYS,
    source_timeout_s: float = DEFAULT_SOURCE_TIMEOUT_S,
) -> FastAPI:
    """The FastAPI application over `store` (a root or a DatasetStore), authenticating with
    `keys` (a KeyStore or keys file) and falling back to
    `source_url` for days not materialised, each source read bounded by `source_timeout_s`."""
    dataset_store = store if isinstance(store, DatasetStore) else DatasetStore(store)
    key_store = keys if isinstance(keys, KeyStore) else KeyStore(keys)
    service = ReadService(
        dataset_store, key_store, source_url, ttl_s, max_source_days, source_timeout_s
    )
    app = FastAPI(
        title="tagflow read API",
        version="1",
        description="Tags, spans, transitions and LOCF samples of one tenant, answered from "
        "the precomputed Parquet datasets (and the source for days not yet materialised). "
        "JSON by default; Arrow IPC stream with `Accept: application/vnd.apache.arrow.stream` "
        "or `?format=arrow`.",
    )
    app.state.read_service = service

    @app.exception_handler(TagflowError)
    async def tagflow_error(request: Request, error: TagflowError) -> JSONResponse:
        status, code = wire_error(error)
        if status == 401:
            return _error_response(401, code, UNAUTHORIZED_MESSAGE)
        return _error_response(status, code, service.scrub(str(error)))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's default body echoes the input; name the parameters only.
        names = sorted({str(e.get("loc", ("", "?"))[-1]) for e in error.errors()})
        return _error_response(400, "invalid_argument", f"invalid parameter(s): {names}")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        # Unknown routes, wrong methods and unparsable bodies: the one error body shape.
        phrase = HTTPStatus(error.status_code).phrase
        answer = _error_response(error.status_code, phrase.lower().replace(" ", "_"), phrase)
        answer.headers.update(error.headers or {})
        return answer

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        # The traceback goes to the server log only; the caller learns nothing internal.
        log.exception("unexpected error in %s", request.url.path)
        return _error_response(
            500,
            "internal_error",
            "internal error; the operator can find the details in the service log",
        )

    @app.get("/v1/health", tags=["service"])
    def health() -> dict[str, str]:
        """Liveness: answers without a key and says nothing about tenants."""
        return {"status": "ok"}

    @app.get("/v1/tags", tags=["read"])
    def tags(
        request: Request,
        reader: Reader,
        start: Start = None,
        end: End = None,
        allow_source: AllowSource = None,
        format: Format = None,
    ) -> Response:
        """Tags with at least one transition in [start, end); all tags without a range."""
        arrow = _wants_arrow(request, format)
        table = reader.tags(_time_range(start, end), _flag(allow_source, "allow_source"))
        return _respond(table, arrow)

    @app.get("/v1/spans/{tag_name:path}", tags=["read"])
    def spans(
        request: Request,
        reader: Reader,
        tag_name: str,
        start: Start = None,
        end: End = None,
        limit: Limit = None,
        allow_source: AllowSource = None,
        format: Format = None,
    ) -> Response:
        """Spans (runs of one value) of a tag intersecting [start, end), newest first."""
        arrow = _wants_arrow(request, format)
        table = reader.spans(
            tag_name, _time_range(start, end), _limit(limit), _flag(allow_source, "allow_source")
        )
        return _respond(table, arrow)

    def metrics(
        kind: str, request: Request, reader: TenantReader, params: dict[str, Any]
    ) -> Response:
        """One handler for the GET (query string) and POST (JSON body) forms."""
        arrow = _wants_arrow(request, _text(params, "format"))
        time_range = _time_range(_text(params, "start"), _text(params, "end"))
        allow = _flag(_text(params, "allow_source"), "allow_source")
        tag_names = _tag_list(params.get("tag"))
        if kind == "data":
            return _respond(reader.metric_data(tag_names, time_range, allow), arrow)
        width = parse_width(_text(params, "bucket_width") or "")
        offset = parse_duration(_text(params, "bucket_offset") or "0s", "bucket offset")
        aggregate = _text(params, "aggregate_function") or "average"
        if kind == "samples":
            table = reader.samples(
                tag_names,
                time_range,
                width,
                offset,
                aggregate,
                _text(params, "bucket_function") or "locf",
                allow,
            )
        elif kind == "derivative":
            table = reader.derivative(tag_names, time_range, width, offset, aggregate, allow)
        else:
            table = reader.counter_rate(tag_names, time_range, width, offset, allow)
        return _respond(table, arrow, wide=True)

    @app.get("/v1/metrics/data", tags=["read"])
    def metric_data(
        request: Request,
        reader: Reader,
        tag: Tags = None,
        start: Start = None,
        end: End = None,
        allow_source: AllowSource = None,
        format: Format = None,
    ) -> Response:
        """Every transition of the tags in [start, end), sorted by time."""
        params = {
            "tag": tag,
            "start": start,
            "end": end,
            "allow_source": allow_source,
            "format": format,
        }
        return metrics("data", request, reader, params)

    @app.get("/v1/metrics/samples", tags=["read"])
    def sample_metric_data(
        request: Request,
        reader: Reader,
        bucket_width: Width = None,
        bucket_offset: Offset = None,
        aggregate_function: Aggregate = None,
        bucket_function: BucketFunction = None,
        tag: Tags = None,
        start: Start = None,
        end: End = None,
        allow_source: AllowSource = None,
        format: Format = None,
    ) -> Response:
        """LOCF samples, wide: `time` (bucket start) + one column per tag."""
        params = {
            "bucket_width": bucket_width,
            "bucket_offset": bucket_offset,
            "aggregate_function": aggregate_function,
            "bucket_function": bucket_function,
            "tag": tag,
            "start": start,
            "end": end,
            "allow_source": allow_source,
            "format": format,
        }
        return metrics("samples", request, reader, params)

    @app.get("/v1/metrics/derivative", tags=["read"])
    def derivative(
        request: Request,
        reader: Reader,
        bucket_width: Width = None,
        bucket_offset: Offset = None,
        aggregate_function: Aggregate = None,
        tag: Tags = None,
        start: Start = None,
        end: End = None,
        allow_source: AllowSource = None,
        format: Format = None,
    ) -> Response:
        """Per-second change of the sampled aggregate between consecutive buckets."""
        params = {
            "bucket_width": bucket_width,
            "bucket_offset": bucket_offset,
            "aggregate_function": aggregate_function,
            "tag": tag,
            "start": start,
            "end": end,
            "allow_source": allow_source,
            "format": format,
        }
        return metrics("derivative", request, reader, params)

    @app.get("/v1/metrics/counter_rate", tags=["read"])
    def counter_rate(
        request: Request,
        reader: Reader,
        bucket_width: Width = None,
        bucket_offset: Offset = None,
        tag: Tags = None,
        start: Start = None,
        end: End = None,
        allow_source: AllowSource = None,
        format: Format = None,
    ) -> Response:
        """Counter increase per second in each bucket; a drop is a reset, not a negative rate."""
        params = {
            "bucket_width": bucket_width,
            "bucket_offset": bucket_offset,
            "tag": tag,
            "start": start,
            "end": end,
            "allow_source": allow_source,
            "format": format,
        }
        return metrics("counter_rate", request, reader, params)

    @app.post("/v1/metrics/{kind}", tags=["read"])
    def metrics_post(kind: str, request: Request, reader: Reader, body: Body) -> Response:
        """The metrics calls with a JSON body (same field names as the query parameters,
        `tag` a list), for tag lists too long for a URL."""
        if kind not in ("data", "samples", "derivative", "counter_rate"):
            raise InvalidArgument(
                "unknown metrics call; use data, samples, derivative or counter_rate"
            )
        return metrics(kind, request, reader, body)

    return app


def serve(settings: Settings, port: int = 8000, host: str = "127.0.0.1") -> None:
    """Run the service with uvicorn (what `tagflow serve` calls)."""
    import uvicorn

    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        # Arrow's default mimalloc pool keeps freed memory in per-thread heaps: across the
        # service's worker threads that held about 200 MiB more, still growing after tens of
        # seconds under load (tests/reliability/test_http_load.py). The operator's choice wins.
        pa.set_memory_pool(pa.system_memory_pool())
    source_url = resolve_source_url(settings.source_url) if settings.source_url else None
    app = create_app(settings.store, settings.keys_file, source_url)
    uvicorn.run(app, host=host, port=port, log_level="info")
