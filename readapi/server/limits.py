"""The limits `tagflow serve` enforces before any key is checked, and the uvicorn configuration
that applies them. Each one is a TAGFLOW_* setting (tagflow.settings holds the defaults):

- TAGFLOW_MAX_HEADER_BYTES (64 KiB): the request line and headers together, every line end and
  the blank line that ends them counted. A longer head is answered 431 and the connection
  closed before the request is routed, whether it comes in one write or in pieces; in pieces,
  as soon as the part received passes the limit, so it never grows past one read in memory
  (uvicorn's default parser, httptools, has no such limit).
- TAGFLOW_MAX_BODY_BYTES (1 MiB): a request body (the JSON of a POST: parameters and a tag
  list). A larger Content-Length is answered 413 before a byte of the body is read; a chunked
  body is counted as it arrives and refused the moment it passes the limit.
- TAGFLOW_HEADER_TIMEOUT_S (10 s): from a connection's first byte of a request (or its opening)
  to the end of the request's headers; a slower head is answered 408 (a silent connection is
  just closed).
- TAGFLOW_BODY_TIMEOUT_S (30 s): from the headers to the end of the body, once the service
  reads it; a slower body is answered 408.
- TAGFLOW_KEEP_ALIVE_TIMEOUT_S (5 s): an idle connection between requests is closed.
- TAGFLOW_MAX_CONNECTIONS (1000, and never above the process's open-file limit less
  RESERVED_FILES): open connections. A new connection over the limit closes the oldest one
  still waiting for a request head, so connections that send slowly or not at all (slowloris)
  cannot keep new clients out; only when every connection has a request in progress is the
  new one answered 503.

Tag names: a read may name any tag of up to 64 KiB of UTF-8 (tagflow.names.MAX_TAG_NAME_BYTES).
The default body limit holds one such name in any JSON escaping (at most 6 bytes per byte:
384 KiB), so every name is addressable by POST (`POST /v1/spans` for spans, and the metrics
calls). The head limit holds a GET of the names of usual length; the client sends a spans path
longer than 4 KiB (tagflow.readapi.query.MAX_SPANS_PATH_BYTES) as POST. Lowering
TAGFLOW_MAX_BODY_BYTES below 400 KiB makes the longest names unaddressable.

uvicorn's own `limit_concurrency` is left unset: it counts idle and half-sent connections too,
so a slowloris at that limit would have every new client answered 503.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass, fields
from typing import Any

import uvicorn

from tagflow.names import MAX_TAG_NAME_BYTES
from tagflow.readapi.server.connection import bounded_protocol
from tagflow.settings import Settings

log = logging.getLogger(__name__)

# Open files kept free of connections: the store's Parquet files, source database connections,
# the keys file and logs.
RESERVED_FILES = 128
# The body of a request naming one tag of the longest allowed name, in the worst JSON escaping
# (a control character is 6 bytes, `\u0001`), with room for the other parameters.
LONGEST_NAME_BODY_BYTES = 6 * MAX_TAG_NAME_BYTES + 4096


@dataclass(frozen=True)
class ServerLimits:
    """The limits of one service (see the module docstring for each)."""

    max_header_bytes: int
    max_body_bytes: int
    header_timeout_s: float
    body_timeout_s: float
    keep_alive_timeout_s: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> ServerLimits:
        """The limits of `settings` (default: every limit at its default)."""
        settings = settings or Settings()
        if settings.max_body_bytes < LONGEST_NAME_BODY_BYTES:
            log.warning(
                "TAGFLOW_MAX_BODY_BYTES is %d: a request naming a tag of up to %d bytes may "
                "need %d, so the longest catalogue names may not be addressable",
                settings.max_body_bytes,
                MAX_TAG_NAME_BYTES,
                LONGEST_NAME_BODY_BYTES,
            )
        # Each limit is the setting of its name.
        return cls(**{limit.name: getattr(settings, limit.name) for limit in fields(cls)})

    def connections_allowed(self) -> int:
        """max_connections, lowered to fit the process's open-file limit: a server out of file
        descriptors can accept no one, which is the state the limit exists to avoid."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY or soft - RESERVED_FILES >= self.max_connections:
            return self.max_connections
        allowed = max(1, soft - RESERVED_FILES)
        log.warning(
            "at most %d connections (TAGFLOW_MAX_CONNECTIONS is %d, the open-file limit %d)",
            allowed,
            self.max_connections,
            soft,
        )
        return allowed


def uvicorn_config(
    app: Any, limits: ServerLimits, host: str = "127.0.0.1", port: int = 8000, **options: Any
) -> uvicorn.Config:
    """uvicorn's configuration for serving `app` within `limits` (`options`: more uvicorn
    settings, e.g. log_level)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=bounded_protocol(limits),
        # uvicorn annotates whole seconds, and passes the value to asyncio's call_later as is.
        timeout_keep_alive=limits.keep_alive_timeout_s,  # type: ignore[arg-type]
        **options,
    )
