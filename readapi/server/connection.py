"""The HTTP/1.1 connection protocol of `tagflow serve`: uvicorn's h11 protocol, plus what must
hold before a request reaches the application and that uvicorn does not do itself: a deadline
for the request head, a cap on open connections that drops the oldest idle or half-sent one
rather than refusing a new client, and JSON answers (431, 408, 400, 503) in the service's one
error shape instead of uvicorn's plain-text ones, and a bound on the request head's size
whether it arrives in pieces (h11's own bound on an incomplete head) or in one write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from tagflow.readapi.errors import error_body

# This module subclasses uvicorn's internal h11 protocol and reads h11's parser state, neither of
# which is public API: the releases it was read from (tests/test_private_apis.py holds them).
UVICORN_WRITTEN_FOR = (">=0.54", "<0.55")
H11_WRITTEN_FOR = (">=0.16", "<0.17")

if TYPE_CHECKING:
    from tagflow.readapi.server.limits import ServerLimits

log = logging.getLogger(__name__)


class _Occasional:
    """A warning logged at most once a minute with how many times it happened meanwhile: an
    attack must not flood the log."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.count = 0
        self.next_at = 0.0

    def __call__(self) -> None:
        self.count += 1
        now = time.monotonic()
        if now >= self.next_at:
            log.warning(self.message, self.count)
            self.count, self.next_at = 0, now + 60


class HeadLimitedConnection(h11.Connection):
    """h11's server side, which refuses a head still incomplete past max_incomplete_event_size
    but parses a complete one of any size (a 100 KB head sent in one write): this one refuses
    a complete head over the limit too, before the request reaches the application."""

    def __init__(self, max_head_bytes: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_head_bytes)
        self.max_head_bytes = max_head_bytes
        # Set when the head was refused for its size (the answer is then 431, not 400).
        self.head_too_large = False
        # Bytes given to receive_data, and the offset in that stream where the current
        # request's head begins: a head's size is where h11 stopped reading it less its start.
        self._received = 0
        self._head_starts = 0

    def receive_data(self, data: bytes) -> None:
        self._received += len(data)
        super().receive_data(data)

    def start_next_cycle(self) -> None:
        super().start_next_cycle()
        self._head_starts = self._received - self._unread()

    def next_event(self) -> Any:
        reading_head = self.their_state is h11.IDLE
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as error:
            self.head_too_large = reading_head and error.error_status_hint == 431
            raise
        if isinstance(event, h11.Request):
            if self._received - self._unread() - self._head_starts > self.max_head_bytes:
                self.head_too_large = True
                raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
        return event

    def _unread(self) -> int:
        # h11 tells what it holds unread only as a copy: taken once per head and per cycle,
        # never per piece, when it holds at most about one read.
        return len(self.trailing_data[0])


class BoundedH11Protocol(H11Protocol):
    """One connection. The class attributes are set per server by `bounded_protocol`."""

    conn: HeadLimitedConnection
    limits: ClassVar[ServerLimits]
    max_connections: ClassVar[int]
    # Connections waiting for a request head (just opened, or idle between requests), oldest
    # first: the ones dropped when a new connection finds the server full.
    waiting: ClassVar[dict[BoundedH11Protocol, None]]
    dropped: ClassVar[_Occasional]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = HeadLimitedConnection(self.limits.max_header_bytes)
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ connection

    # uvicorn's base names asyncio.BaseTransport; the loop hands a TCP protocol a Transport.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.waiting[self] = None
        # uvicorn sets no timer on a new connection: one that never sends would stay forever.
        self._arm_head_timer()
        if len(self.connections) > self.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self.waiting.pop(self, None)
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _make_room(self) -> None:
        open_connections = sum(1 for c in self.connections if not c.transport.is_closing())
        if open_connections <= self.max_connections:
            return
        oldest = next((c for c in self.waiting if c is not self), None)
        if oldest is None:
            self._refuse(
                503,
                "service_unavailable",
                f"the service has {self.max_connections} requests in progress, its limit "
                "(TAGFLOW_MAX_CONNECTIONS); retry shortly",
            )
            return
        self.dropped()
        oldest.waiting.pop(oldest, None)
        oldest.transport.close()

    # ------------------------------------------------------------------ request head

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._head_bytes += len(data)
            if self._head_timer is None:
                self._arm_head_timer()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._head_received()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.waiting[self] = None  # idle now: uvicorn's keep-alive timeout runs

    def _head_received(self) -> None:
        self.waiting.pop(self, None)
        self._cancel_head_timer()
        self._head_bytes = 0

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_late)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self._head_bytes == 0:
            self.transport.close()  # nothing was asked: nobody to answer
            return
        self._refuse(
            408,
            "request_timeout",
            f"the request line and headers did not arrive within "
            f"{self.limits.header_timeout_s:g} s (TAGFLOW_HEADER_TIMEOUT_S)",
        )

    # ------------------------------------------------------------------ refusals

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 cannot parse, or whose head is over the limit."""
        if self.conn.head_too_large:
            self._refuse(
                431,
                "headers_too_large",
                f"the request line and headers are over {self.limits.max_header_bytes} bytes "
                "(TAGFLOW_MAX_HEADER_BYTES); send long tag lists in a POST body",
            )
        else:
            self._refuse(400, "bad_request", "the request is not valid HTTP/1.1")

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer `status` with the one error body and close (written directly: h11 may be in
        a state where it sends nothing, e.g. before any request)."""
        body = error_body(code, message)
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        self.waiting.pop(self, None)
        self._cancel_head_timer()
        self.transport.write(head.encode("ascii") + body)
        self.transport.close()


def bounded_protocol(limits: ServerLimits) -> type[BoundedH11Protocol]:
    """The protocol class of one server: its limits and its own registry of waiting
    connections."""
    return type(
        "BoundedH11Protocol",
        (BoundedH11Protocol,),
        {
            "limits": limits,
            "max_connections": limits.connections_allowed(),
            "waiting": {},
            "dropped": _Occasional(
                "at the connection limit: closed %d connection(s) still waiting for a request "
                "head (TAGFLOW_MAX_CONNECTIONS)"
            ),
        },
    )
