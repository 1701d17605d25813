"""The HTTP read service (FastAPI): the client's calls over HTTP, as JSON or Arrow IPC.

Every data endpoint needs `Authorization: Bearer <key>`; the key decides the tenant (an
optional X-Tagflow-Tenant header must then name that same tenant). Nothing from a request
becomes a path or SQL text: the tenant comes from the keys file, tag names are only compared
with the tenant's tag catalogue, and times and widths are parsed into values. Errors are
typed JSON bodies without paths, SQL, keys or stack traces; an unusable keys file is a 503
that says nothing more to any caller (the log says what is wrong).

Before any of that, the service is bounded (tagflow.readapi.server.limits): the size and time of
a request's head and body, and the number of open connections.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from http import HTTPStatus
from typing import Any

import pyarrow as pa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tagflow.errors import TagflowError
from tagflow.readapi.engine.config import ReadConfig, StoreRoot
from tagflow.readapi.engine.read_engine import ReadEngine
from tagflow.readapi.errors import UNAUTHORIZED_MESSAGE, UNAVAILABLE_MESSAGE, wire_error
from tagflow.readapi.server import ui
from tagflow.readapi.server.annotation_routes import router as annotation_router
from tagflow.readapi.server.keys import KeyFileError, KeyStore
from tagflow.readapi.server.limits import ServerLimits, uvicorn_config
from tagflow.readapi.server.memory import keep_freed_memory
from tagflow.readapi.server.request_body import RequestBodyLimits
from tagflow.readapi.server.routes import router
from tagflow.settings import Settings

log = logging.getLogger(__name__)

# How often the same unusable-keys-file reason is logged while requests keep failing on it.
_KEYS_FAILURE_LOG_INTERVAL_S = 60.0


class ReadService:
    """Shared state of the service: the read engine (store, caches, source) and the keys."""

    def __init__(self, engine: ReadEngine, keys: KeyStore) -> None:
        self.engine = engine
        self.keys = keys
        self._keys_failure_logged: tuple[str, float] = ("", 0.0)

    def scrub(self, message: str) -> str:
        """Defence in depth: errors are written without paths or URLs, but should one ever
        carry the store root or the source URL, it is cut out here."""
        root = self.engine.store.root
        source = self.engine.fallback.url if self.engine.fallback is not None else None
        for secret in (str(root), root.path, source):
            if secret and len(secret) > 3:
                message = message.replace(secret, "<hidden>")
        return message

    def log_keys_failure(self, error: KeyFileError) -> None:
        """Tell the operator why the keys file is unusable: once per reason and minute, since
        every request fails on it until it is fixed."""
        reason, now = str(error), time.monotonic()
        last_reason, last_at = self._keys_failure_logged
        if reason != last_reason or now - last_at >= _KEYS_FAILURE_LOG_INTERVAL_S:
            self._keys_failure_logged = (reason, now)
            log.error("answering 503 to every read: %s", reason)


def _error_response(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def create_app(
    store: ReadConfig | StoreRoot,
    keys: KeyStore | str | os.PathLike[str],
    source_url: str | None = None,
    *,
    limits: ServerLimits | None = None,
    **options: Any,
) -> FastAPI:
    """The FastAPI application over the read engine of `store` (a ReadConfig, or a store root
    that with `source_url` and `options`, other ReadConfig fields such as source_timeout_s or
    answer_limits, makes one), authenticating with `keys` (a KeyStore or keys file). `limits`
    bounds request bodies here (default: the settings' defaults); the limits on connections
    and request heads are uvicorn's, set by `serve`."""
    limits = limits or ServerLimits.from_settings()
    config = (
        store
        if isinstance(store, ReadConfig)
        else ReadConfig(store=store, source_url=source_url, **options)
    )
    key_store = keys if isinstance(keys, KeyStore) else KeyStore(keys)
    service = ReadService(ReadEngine(config), key_store)
    app = FastAPI(
        title="tagflow read API",
        version="1",
        description="Tags, spans, transitions and LOCF samples of one tenant, answered from "
        "the precomputed Parquet datasets (and the source for days not yet materialised). "
        "JSON by default; Arrow IPC stream with `Accept: application/vnd.apache.arrow.stream` "
        "or `?format=arrow`.",
    )
    app.state.read_service = service
    app.add_middleware(
        RequestBodyLimits,
        max_body_bytes=limits.max_body_bytes,
        body_timeout_s=limits.body_timeout_s,
    )

    @app.exception_handler(TagflowError)
    async def tagflow_error(request: Request, error: TagflowError) -> JSONResponse:
        if isinstance(error, KeyFileError):
            # Whatever the key, the caller learns only that the service is not available.
            service.log_keys_failure(error)
            return _error_response(503, "service_unavailable", UNAVAILABLE_MESSAGE)
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

    app.include_router(router)
    app.include_router(annotation_router)  # span annotation writes (DESIGN §9)
    app.include_router(ui.router)  # the /ui page over these routes
    return app


def serve(settings: Settings, port: int = 8000, host: str = "127.0.0.1") -> None:
    """Run the service with uvicorn within the settings' limits (what `tagflow serve` calls)."""
    import uvicorn

    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        # Arrow's default mimalloc pool keeps freed memory in per-thread heaps: across the
        # service's worker threads that held about 200 MiB more, still growing after tens of
        # seconds under load (tests/reliability/test_http_load.py). The operator's choice wins.
        pa.set_memory_pool(pa.system_memory_pool())
    keep_freed_memory()
    limits = ServerLimits.from_settings(settings)
    app = create_app(ReadConfig.from_settings(settings), settings.keys_file, limits=limits)
    # What the process loaded to start (FastAPI, pyarrow, Dagster's modules: about 260,000
    # objects) is kept out of the garbage collector's full passes, which otherwise walk all of
    # it every so often under a stream of requests: a pause of 0.3 s or more on a busy
    # machine, the p99 of span annotation writes (benchmarks/annotations.py).
    gc.collect()
    gc.freeze()
    uvicorn.Server(uvicorn_config(app, limits, host, port, log_level="info")).run()
