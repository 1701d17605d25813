"""The client's HTTP transport: a query sent to the read service, answered as an Arrow IPC
stream (several record batches of one schema, decoded into one table), with error responses
raised back as the same typed errors."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import pyarrow as pa

from tagflow.errors import SourceUnavailable, TagflowError
from tagflow.readapi.errors import error_from_wire
from tagflow.readapi.query import Query
from tagflow.readapi.wire import ARROW_STREAM, TENANT_HEADER, decode_ipc

DEFAULT_TIMEOUT_S = 60.0


def public_address(host: str) -> str:
    """scheme://host[:port] of a service URL, without credentials or path, for messages."""
    parts = urlsplit(host)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


class HttpTransport:
    """Talks to `tagflow serve` at `host` with one tenant's API key."""

    def __init__(
        self,
        host: str,
        api_key: str,
        tenant: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.address = public_address(host)
        headers = {"Authorization": f"Bearer {api_key}", "Accept": ARROW_STREAM}
        if tenant is not None:
            headers[TENANT_HEADER] = tenant
        self._http = httpx.Client(base_url=host.rstrip("/"), headers=headers, timeout=timeout_s)

    def __repr__(self) -> str:
        return f"HttpTransport({self.address!r})"

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> pa.Table:
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise SourceUnavailable(
                f"the read service at {self.address} could not be reached; check the host "
                "(TAGFLOW_HOST) and that `tagflow serve` is running"
            ) from None
        except httpx.HTTPError:
            # Among them an answer whose chunked body ended early: the service failed half-way.
            raise SourceUnavailable(
                f"the connection to the read service at {self.address} failed during the "
                "request; retry, or ask its operator"
            ) from None
        if response.status_code != 200:
            raise self._error(response)
        if not response.headers.get("content-type", "").startswith(ARROW_STREAM):
            raise TagflowError(f"the service at {self.address} did not answer with Arrow data")
        try:
            return decode_ipc(response.content)
        except (pa.ArrowException, OSError):
            # HTTP's chunked framing already catches an answer cut short; this is the backstop.
            raise TagflowError(
                f"the answer of the service at {self.address} was cut short; retry, or ask "
                "its operator"
            ) from None

    @staticmethod
    def _error(response: httpx.Response) -> TagflowError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        return error_from_wire(response.status_code, body.get("error"), body.get("message"))

    def read(self, query: Query) -> pa.Table:
        """The service's answer to `query` (a GET with a query string, or a POST with a JSON
        body for the calls that take a tag list, which may not fit in a URL)."""
        params = query.params()
        if query.method == "GET":
            return self._call("GET", query.path(), params=params)
        return self._call("POST", query.path(), json=params)
