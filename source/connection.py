"""Connections to the source database: URL normalisation, timeouts, retries with backoff and
read-only sessions. Failures surface as SourceUnavailable, free of secrets, hosts and SQL."""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypedDict, TypeVar, Unpack

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as adbc_dbapi
import psycopg
import sqlalchemy.exc
from psycopg.abc import AdaptContext

from tagflow.errors import SourceRefused, SourceUnavailable
from tagflow.source.postgres import connect_with_retries, session_conninfo, url_params

T = TypeVar("T")

DEFAULT_CONNECT_TIMEOUT_S = 10
DEFAULT_STATEMENT_TIMEOUT_S = 900
DEFAULT_ATTEMPTS = 4
DEFAULT_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
# One connect's retries end once this much time has gone by (each attempt may itself wait the
# connect timeout): the day step retries a lost source again within its own budget
# (TAGFLOW_SOURCE_RETRY_BUDGET_S), so a source that is away fails a run in bounded time.
DEFAULT_RETRY_BUDGET_S = 10.0

# SQLAlchemy spells the driver into the scheme (postgresql+psycopg://, postgres+asyncpg://);
# libpq only knows postgresql:// and postgres://.
_SCHEME = re.compile(r"^postgres(?:ql)?(?:\+[A-Za-z0-9_]+)?://", re.IGNORECASE)

_TIMEOUT = "the source query exceeded the statement timeout; retry, or raise the timeout"
_LOST = "the connection to the source database was lost; retry later"


def libpq_url(url: str) -> str:
    """Turn a SQLAlchemy-style or libpq URL into a libpq URI; a keyword/value conninfo
    string (`host=... dbname=...`) is returned unchanged."""
    return _SCHEME.sub("postgresql://", url.strip(), count=1)


def session_options(statement_timeout_s: float) -> str:
    """libpq `options` for every tagflow session: the source is production, so sessions are
    read-only by default, statements are bounded, and timestamps render in UTC."""
    timeout_ms = max(1, int(statement_timeout_s * 1000))
    return (
        "-c default_transaction_read_only=on"
        f" -c statement_timeout={timeout_ms}"
        " -c idle_in_transaction_session_timeout=600000"
        " -c TimeZone=UTC"
    )


def source_conninfo(
    url: str,
    *,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    statement_timeout_s: float = DEFAULT_STATEMENT_TIMEOUT_S,
) -> str:
    """The full libpq conninfo for `url` with tagflow's timeouts and session options
    (options already in the URL are kept, ours appended so they win)."""
    params = url_params(
        libpq_url(url),
        unparsable=SourceUnavailable(
            "the source URL could not be parsed; expected "
            "postgresql://user:password@host:port/dbname"
        ),
    )
    return session_conninfo(
        params,
        options=session_options(statement_timeout_s),
        connect_timeout_s=max(1, int(connect_timeout_s)),
        application_name="tagflow",
    )


def _give_up(reason: str, attempts: int, permanent: bool) -> SourceUnavailable:
    if permanent:
        return SourceRefused(
            f"{reason}; check the source URL (TAGFLOW_SOURCE_URL / --source-url) and "
            "the role's password"
        )
    return SourceUnavailable(
        f"{reason} (after {attempts} attempt{'s' if attempts > 1 else ''}); "
        "check the source URL (TAGFLOW_SOURCE_URL / --source-url) and that the "
        "server is up"
    )


class SessionOptions(TypedDict, total=False):
    """How `connect` and `connect_adbc` open a session; each has a DEFAULT_* when left out."""

    connect_timeout_s: float
    statement_timeout_s: float
    attempts: int
    backoff_s: float


def _open(
    url: str,
    open_conninfo: Callable[[str], T],
    *,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    statement_timeout_s: float = DEFAULT_STATEMENT_TIMEOUT_S,
    attempts: int = DEFAULT_ATTEMPTS,
    backoff_s: float = DEFAULT_BACKOFF_S,
) -> T:
    """`open_conninfo` of the session's conninfo until it connects, backing off up to
    MAX_BACKOFF_S between attempts and starting none after DEFAULT_RETRY_BUDGET_S; failures no
    retry can fix are SourceRefused at once."""
    conninfo = source_conninfo(
        url, connect_timeout_s=connect_timeout_s, statement_timeout_s=statement_timeout_s
    )
    return connect_with_retries(
        lambda: open_conninfo(conninfo),
        database="the source database",
        give_up=_give_up,
        attempts=attempts,
        backoff_s=backoff_s,
        max_backoff_s=MAX_BACKOFF_S,
        budget_s=DEFAULT_RETRY_BUDGET_S,
        transient=(psycopg.OperationalError, adbc_driver_manager.OperationalError),
        tells_refused=True,
    )


def connect(
    url: str, *, context: AdaptContext | None = None, **options: Unpack[SessionOptions]
) -> psycopg.Connection:
    """Open a read-only autocommit psycopg session on the source, retrying transient
    failures with exponential backoff. `context` holds type adapters (SQLAlchemy's, for the
    sessions of its pool).

    Autocommit keeps no transaction idle between extraction queries; use
    `with conn.transaction():` for one snapshot across several reads. Most callers want a
    pooled session instead (`tagflow.source.engines.source_session`)."""
    return _open(
        url,
        lambda conninfo: psycopg.connect(conninfo, autocommit=True, context=context),
        **options,
    )


def connect_adbc(url: str, **options: Unpack[SessionOptions]) -> adbc_dbapi.Connection:
    """The same session as `connect` (read-only, timeouts, UTC) through the ADBC driver,
    which streams COPY results straight into Arrow record batches."""
    return _open(url, lambda conninfo: adbc_dbapi.connect(conninfo, autocommit=True), **options)


@contextmanager
def source_errors(action: str) -> Iterator[None]:
    """Map driver failures while `action` runs to SourceUnavailable with a message a user can
    act on. Programming errors (a bug in tagflow's SQL) propagate unchanged. SQLAlchemy's
    wrappers (of reflection and pooled sessions) are judged by the driver error they wrap."""
    try:
        yield
    except sqlalchemy.exc.DBAPIError as exc:
        if isinstance(exc.orig, psycopg.errors.QueryCanceled):
            raise SourceUnavailable(f"{action}: {_TIMEOUT}") from None
        if isinstance(exc.orig, psycopg.OperationalError) or exc.connection_invalidated:
            raise SourceUnavailable(f"{action}: {_LOST}") from None
        # As the driver raised it: callers handle psycopg errors, and the wrapper quotes SQL.
        raise (exc.orig if isinstance(exc.orig, psycopg.Error) else exc) from None
    except adbc_driver_manager.OperationalError as exc:
        if getattr(exc, "sqlstate", None) == "57014":
            raise SourceUnavailable(f"{action}: {_TIMEOUT}") from None
        raise SourceUnavailable(f"{action}: {_LOST}") from None
    except psycopg.errors.QueryCanceled:
        raise SourceUnavailable(f"{action}: {_TIMEOUT}") from None
    except psycopg.OperationalError:
        raise SourceUnavailable(f"{action}: {_LOST}") from None


@contextmanager
def answer_within(conn: psycopg.Connection, seconds: float, action: str) -> Iterator[None]:
    """Bound the wall time of everything `conn` does inside the block. statement_timeout
    needs a server that still answers and keepalives a peer that stops acknowledging; a
    server or proxy that keeps the connection open but goes silent would block libpq
    forever. At the deadline the socket is shut down, which fails the blocked read at once
    (and the connection with it) as SourceUnavailable."""
    lock = threading.Lock()
    state = {"open": True, "fired": False}

    def cut() -> None:
        with lock:
            if not state["open"] or conn.closed:
                return  # the block ended: the descriptor may already belong to another file
            state["fired"] = True
            try:
                with socket.socket(fileno=os.dup(conn.fileno())) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
            except (OSError, psycopg.Error):
                return  # the connection broke by itself meanwhile; the block sees that

    timer = threading.Timer(seconds, cut)
    timer.daemon = True
    timer.start()
    try:
        yield
    except (SourceUnavailable, psycopg.Error):
        if state["fired"]:
            raise SourceUnavailable(
                f"{action}: the source database did not answer within {seconds:g} s; retry later"
            ) from None
        raise
    finally:
        with lock:
            state["open"] = False
        timer.cancel()
