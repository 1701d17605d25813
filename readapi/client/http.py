"""The client's HTTP transport: a query sent to the read service, answered as an Arrow IPC
stream (several record batches of one schema, decoded into one table), with error responses
raised back as the same typed errors."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import pyarrow as pa
from httpx import Response

from tagflow.errors import SourceUnavailable, TagflowError
from tagflow.readapi.annotation_wire import (
    COMPUTED,
    change_from_json,
    span_from_json,
)
from tagflow.readapi.errors import error_from_wire
from tagflow.readapi.models import ANNOTATIONS_HEADER, ANNOTATIONS_KEY, Span, SpanChange
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

    def _request(self, method: str, path: str, write: bool = False, **kwargs: Any) -> Response:
        try:
            return self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise SourceUnavailable(
                f"the read service at {self.address} could not be reached; check the host "
                "(TAGFLOW_HOST) and that `tagflow serve` is running"
            ) from None
        except httpx.HTTPError:
            # Among them an answer whose chunked body ended early: the service failed half-way.
            # A write sent but not answered may have been committed: its revision tells.
            retry = (
                "the write may or may not have been made: read the span's history (its "
                "revision) before retrying"
                if write
                else "retry, or ask its operator"
            )
            raise SourceUnavailable(
                f"the connection to the read service at {self.address} failed during the "
                f"request; {retry}"
            ) from None

    def _call(self, method: str, path: str, **kwargs: Any) -> pa.Table:
        response = self._request(method, path, **kwargs)
        if response.status_code != 200:
            raise self._error(response)
        if not response.headers.get("content-type", "").startswith(ARROW_STREAM):
            raise TagflowError(f"the service at {self.address} did not answer with Arrow data")
        try:
            table = decode_ipc(response.content)
        except (pa.ArrowException, OSError):
            # HTTP's chunked framing already catches an answer cut short; this is the backstop.
            raise TagflowError(
                f"the answer of the service at {self.address} was cut short; retry, or ask "
                "its operator"
            ) from None
        # The header decides whether annotations were merged, whatever the stream carried.
        state = response.headers.get(ANNOTATIONS_HEADER)
        if state is not None:
            table = table.replace_schema_metadata({ANNOTATIONS_KEY: state.encode()})
        return table

    @staticmethod
    def _error(response: httpx.Response) -> TagflowError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        current = body.get("current")
        return error_from_wire(
            response.status_code,
            body.get("error"),
            body.get("message"),
            span_from_json(current) if isinstance(current, dict) else None,
        )

    def read(self, query: Query) -> pa.Table:
        """The service's answer to `query` (a GET with a query string, or a POST with a JSON
        body for the calls that take a tag list, which may not fit in a URL)."""
        params = query.params()
        if query.method == "GET":
            return self._call("GET", query.path(), params=params)
        return self._call("POST", query.path(), json=params)

    # ------------------------------------------------------------------ span annotation writes

    def _write(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The JSON answer of a write (or a history read); its typed error otherwise."""
        response = self._request(method, path, write=body is not None, json=body)
        if response.status_code not in (200, 201):
            raise self._error(response)
        try:
            return response.json()
        except ValueError:
            raise TagflowError(f"the service at {self.address} did not answer with JSON") from None

    def update(
        self,
        span_id: int,
        *,
        revision: int,
        tag_name: str | None = None,
        raw_begin_at: datetime | None = None,
        labels: dict[str, str] | None = None,
        note: str | None = None,
        begin_at: datetime | str | None = None,
        end_at: datetime | str | None = None,
        hidden: bool | None = None,
    ) -> Span:
        """PATCH the span's annotation: the fields given (None: left out; COMPUTED: null)."""
        fields = {
            "tag_name": tag_name,
            "raw_begin_at": raw_begin_at,
            "labels": labels,
            "note": note,
            "begin_at": begin_at,
            "end_at": end_at,
            "hidden": hidden,
        }
        body: dict[str, Any] = {"revision": revision}
        for name, value in fields.items():
            if value is not None:
                body[name] = None if value == COMPUTED else _wire_value(value)
        return span_from_json(self._write("PATCH", f"/v1/annotations/spans/{span_id}", body))

    def create(
        self,
        tag_name: str,
        begin_at: datetime,
        end_at: datetime,
        *,
        labels: dict[str, str] | None = None,
        note: str | None = None,
    ) -> Span:
        body = {"tag_name": tag_name, "begin_at": begin_at, "end_at": end_at}
        body.update(labels=labels, note=note)
        wire = {name: _wire_value(value) for name, value in body.items() if value is not None}
        return span_from_json(self._write("POST", "/v1/annotations/spans", wire))

    def move(
        self,
        span_id: int,
        *,
        revision: int,
        to_span_id: int | None = None,
        to_tag_name: str | None = None,
        to_raw_begin_at: datetime | None = None,
        begin_at: datetime | None = None,
        end_at: datetime | None = None,
    ) -> Span:
        fields = {
            "to_span_id": to_span_id,
            "to_tag_name": to_tag_name,
            "to_raw_begin_at": to_raw_begin_at,
            "begin_at": begin_at,
            "end_at": end_at,
        }
        body: dict[str, Any] = {"revision": revision}
        body.update({name: _wire_value(v) for name, v in fields.items() if v is not None})
        return span_from_json(self._write("POST", f"/v1/annotations/spans/{span_id}/move", body))

    def history(self, span_id: int) -> list[SpanChange]:
        changes = self._write("GET", f"/v1/annotations/spans/{span_id}/history")
        return [change_from_json(change) for change in changes]


def _wire_value(value: object) -> object:
    """A write's field as JSON: times as ISO 8601 (a naive one stays naive, and is refused)."""
    return value.isoformat() if isinstance(value, datetime) else value
