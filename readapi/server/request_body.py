"""Bounds on a request's body, as pure ASGI middleware in front of the whole application, so
they hold before routing, before the key is checked and before anything parses the body.

A declared Content-Length over the limit is answered 413 at once, without reading the body. A
body without one (chunked) is counted as the application reads it and refused the moment it
passes the limit; a body that does not arrive within its time limit is refused 408. An answer
sent while part of the body is still unread (a 401 to a POST without a key, a 413) closes the
connection after it, so the rest of the body is never read at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from tagflow.readapi.errors import RequestTimeout, RequestTooLarge, error_body, wire_error

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_CLOSE = (b"connection", b"close")


class RequestBodyLimits:
    """ASGI middleware: at most `max_body_bytes` of body per request, received within
    `body_timeout_s` (TAGFLOW_MAX_BODY_BYTES and TAGFLOW_BODY_TIMEOUT_S)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout_s: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, chunked = _declared_body(scope["headers"])
        if declared is not None and declared > self.max_body_bytes:
            await _refuse(send, self._too_large())
            return
        body = _Body(self, receive, expected=bool(declared) or chunked)
        started = False

        async def send_closing_early(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not body.complete:
                    headers = list(message.get("headers", []))
                    if _CLOSE not in headers:
                        message = {**message, "headers": [*headers, _CLOSE]}
            await send(message)

        try:
            await self.app(scope, body.receive, send_closing_early)
        except (RequestTooLarge, RequestTimeout) as refusal:
            # The application's error handlers answer these; this is for any that escape.
            if started:
                raise
            await _refuse(send, refusal)

    def _too_large(self) -> RequestTooLarge:
        return RequestTooLarge(
            f"the request body is over {self.max_body_bytes} bytes (TAGFLOW_MAX_BODY_BYTES); "
            "ask for fewer tags per request"
        )


class _Body:
    """The request's receive channel, counting the body and watching its deadline until the
    last part of it has arrived; after that (e.g. while an answer streams) it is untouched."""

    def __init__(self, limits: RequestBodyLimits, receive: Receive, expected: bool) -> None:
        self._limits = limits
        self._receive = receive
        self._received = 0
        self._deadline = asyncio.get_running_loop().time() + limits.body_timeout_s
        self.complete = not expected

    async def receive(self) -> Message:
        if self.complete:
            return await self._receive()
        remaining = self._deadline - asyncio.get_running_loop().time()
        try:
            message = await asyncio.wait_for(self._receive(), max(remaining, 0))
        except TimeoutError:
            raise RequestTimeout(
                f"the request body did not arrive within {self._limits.body_timeout_s:g} s "
                "(TAGFLOW_BODY_TIMEOUT_S)"
            ) from None
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            if self._received > self._limits.max_body_bytes:
                raise self._limits._too_large()
            if not message.get("more_body", False):
                self.complete = True
        return message


def _declared_body(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, bool]:
    """(Content-Length, whether the body is chunked) of a request's headers (h11 has refused
    malformed or conflicting ones already)."""
    length: int | None = None
    chunked = False
    for name, value in headers:
        if name == b"content-length" and value.strip().isdigit():
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    return length, chunked


async def _refuse(send: Send, error: RequestTooLarge | RequestTimeout) -> None:
    status, code = wire_error(error)
    body = error_body(code, str(error))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        _CLOSE,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
