"""The client's HTTP transport: the same calls as TenantReader, answered by the read service
as Arrow IPC streams, with error responses raised back as the same typed errors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pyarrow as pa

from tagflow.errors import SourceUnavailable, TagflowError
from tagflow.names import validate_tag_name
from tagflow.readapi.errors import error_from_wire
from tagflow.readapi.wire import ARROW_STREAM, TENANT_HEADER, decode_ipc
from tagflow.time_range import TimeRange, format_duration

DEFAULT_TIMEOUT_S = 60.0


def tag_path(tag_name: str) -> str:
    """A tag name as one URL path segment: everything but letters, digits, '-', '_' and '~'
    is percent-encoded, dots included, so no client library can normalise '..' away."""
    return quote(validate_tag_name(tag_name), safe="").replace(".", "%2E")


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
        except httpx.HTTPError:
            raise SourceUnavailable(
                f"the read service at {self.address} could not be reached; check the host "
                "(TAGFLOW_HOST) and that `tagflow serve` is running"
            ) from None
        if response.status_code != 200:
            raise self._error(response)
        if not response.headers.get("content-type", "").startswith(ARROW_STREAM):
            raise TagflowError(f"the service at {self.address} did not answer with Arrow data")
        return decode_ipc(response.content)

    @staticmethod
    def _error(response: httpx.Response) -> TagflowError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        return error_from_wire(response.status_code, body.get("error"), body.get("message"))

    @staticmethod
    def _range(time_range: TimeRange | None) -> dict[str, str]:
        if time_range is None:
            return {}
        start, end = time_range.as_strings()
        return {"start": start, "end": end}

    @staticmethod
    def _allow(allow_source: bool) -> dict[str, str]:
        return {} if allow_source else {"allow_source": "false"}

    # ------------------------------------------------------------------ calls

    def tags(self, time_range: TimeRange | None, allow_source: bool = True) -> pa.Table:
        params = {**self._range(time_range), **self._allow(allow_source)}
        return self._call("GET", "/v1/tags", params=params)

    def spans(
        self,
        tag_name: str,
        time_range: TimeRange | None,
        limit: int | None = None,
        allow_source: bool = True,
    ) -> pa.Table:
        params = {**self._range(time_range), **self._allow(allow_source)}
        if limit is not None:
            params["limit"] = str(limit)
        return self._call("GET", f"/v1/spans/{tag_path(tag_name)}", params=params)

    def _metrics(self, kind: str, tag_names: Sequence[str] | None, **fields: Any) -> pa.Table:
        # POST with a JSON body: a long tag list would not fit in a URL.
        body = {k: v for k, v in fields.items() if v is not None}
        if tag_names is not None:
            body["tag"] = list(tag_names)
        return self._call("POST", f"/v1/metrics/{kind}", json=body)

    def metric_data(
        self,
        tag_names: Sequence[str] | None,
        time_range: TimeRange | None,
        allow_source: bool = True,
    ) -> pa.Table:
        return self._metrics(
            "data", tag_names, **self._range(time_range), **self._allow(allow_source)
        )

    def samples(
        self,
        tag_names: Sequence[str] | None,
        time_range: TimeRange | None,
        width: timedelta,
        offset: timedelta = timedelta(0),
        aggregate: str = "average",
        bucket_function: str = "locf",
        allow_source: bool = True,
    ) -> pa.Table:
        return self._metrics(
            "samples",
            tag_names,
            bucket_width=format_duration(width),
            bucket_offset=format_duration(offset),
            aggregate_function=aggregate,
            bucket_function=bucket_function,
            **self._range(time_range),
            **self._allow(allow_source),
        )

    def derivative(
        self,
        tag_names: Sequence[str] | None,
        time_range: TimeRange | None,
        width: timedelta,
        offset: timedelta = timedelta(0),
        aggregate: str = "average",
        allow_source: bool = True,
    ) -> pa.Table:
        return self._metrics(
            "derivative",
            tag_names,
            bucket_width=format_duration(width),
            bucket_offset=format_duration(offset),
            aggregate_function=aggregate,
            **self._range(time_range),
            **self._allow(allow_source),
        )

    def counter_rate(
        self,
        tag_names: Sequence[str] | None,
        time_range: TimeRange | None,
        width: timedelta,
        offset: timedelta = timedelta(0),
        allow_source: bool = True,
    ) -> pa.Table:
        return self._metrics(
            "counter_rate",
            tag_names,
            bucket_width=format_duration(width),
            bucket_offset=format_duration(offset),
            **self._range(time_range),
            **self._allow(allow_source),
        )
