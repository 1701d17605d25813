"""The state database: where it is (TAGFLOW_STATE_URL, or the `tagflow_state` database of the
demo's embedded server, created when missing), one pooled SQLAlchemy engine per URL with
tagflow's timeouts, and its failures as one-line StateUnavailable errors free of URLs, hosts and
SQL. Unlike the source's sessions these may write: this database belongs to tagflow."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import conninfo as pg_conninfo
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.abc import AdaptContext
from sqlalchemy import event

from tagflow.errors import InvalidArgument, SourceUnavailable, StateUnavailable
from tagflow.settings import EMBEDDED_SOURCE
from tagflow.source.connection import answer_within, libpq_url
from tagflow.source.embedded import embedded_server_url

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "tagflow_state"
CONNECT_TIMEOUT_S = 5
# A write is a few rows: anything slower is a database in trouble, not a big statement.
STATEMENT_TIMEOUT_S = 10
# How long a write waits for the row another writer of the same span holds.
LOCK_TIMEOUT_S = 10
CONNECT_ATTEMPTS = 3
BACKOFF_S = 0.2
POOL_SIZE = 4
MAX_OVERFLOW = 12
POOL_TIMEOUT_S = 10.0
POOL_RECYCLE_S = 1800
PING_TIMEOUT_S = 5.0

_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}
_PERMANENT_SQLSTATES = {"28000", "28P01", "3D000"}
_HINT = "check TAGFLOW_STATE_URL and that the state database is up"


def state_url(configured: str | None, *, source_url: str | None = None) -> str:
    """The state database's URL: `configured` (TAGFLOW_STATE_URL), or when it is unset or
    EMBEDDED_SOURCE the DEFAULT_DATABASE of the demo's embedded server (started if stopped,
    the database created if missing). A URL naming the same database as `source_url` is
    refused: the source is production data, never tagflow's state."""
    if not configured or configured == EMBEDDED_SOURCE:
        return database_on_server(embedded_server_url(), DEFAULT_DATABASE)
    if source_url and source_url != EMBEDDED_SOURCE and _same_database(configured, source_url):
        raise InvalidArgument(
            "TAGFLOW_STATE_URL names the source database; give tagflow a database of its own"
        )
    return configured


def _same_database(first: str, second: str) -> bool:
    def where(url: str) -> tuple[Any, ...]:
        params = _params(url)
        return (params.get("host"), str(params.get("port") or 5432), params.get("dbname"))

    return where(first) == where(second)


def database_on_server(server_url: str, name: str) -> str:
    """The URL of database `name` on the server of `server_url`, created there if missing (as
    the user of `server_url`, who must be allowed to create databases)."""
    params = _params(server_url)
    with state_errors("creating the state database"):
        conn = _connect_once(_conninfo(server_url), None)
        with conn:
            conn.autocommit = True
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if found.fetchone() is None:
                try:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                except (pg_errors.DuplicateDatabase, pg_errors.UniqueViolation):
                    pass  # another process created it at the same moment
    return pg_conninfo.make_conninfo("", **{**params, "dbname": name})


def _params(url: str) -> dict[str, Any]:
    try:
        return pg_conninfo.conninfo_to_dict(libpq_url(url))
    except psycopg.ProgrammingError:
        raise StateUnavailable(
            "the state database URL could not be parsed; expected "
            "postgresql://user:password@host:port/dbname"
        ) from None


def _conninfo(url: str) -> str:
    """`url` with tagflow's timeouts, keepalives and session options (the URL's own options
    kept, ours appended so they win)."""
    params = _params(url)
    ours = (
        f"-c statement_timeout={STATEMENT_TIMEOUT_S * 1000}"
        f" -c lock_timeout={LOCK_TIMEOUT_S * 1000}"
        " -c idle_in_transaction_session_timeout=60000"
        " -c TimeZone=UTC -c DateStyle=ISO"
    )
    params["options"] = " ".join(p for p in (str(params.get("options") or ""), ours) if p)
    params["connect_timeout"] = CONNECT_TIMEOUT_S
    params["application_name"] = params.get("application_name") or "tagflow-state"
    for name, value in _KEEPALIVES.items():
        params.setdefault(name, value)
    return pg_conninfo.make_conninfo("", **params)


def _connect_failure(exc: Exception) -> str:
    """Why a connection failed, without the driver's text (it names hosts, paths and users)."""
    text = str(exc).lower()
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate in {"28000", "28P01"} or "authentication failed" in text:
        return "the state database rejected the credentials"
    if sqlstate == "3D000" or ("database" in text and "does not exist" in text):
        return "the state database named in the URL does not exist"
    if "timeout" in text or "timed out" in text:
        return "connecting to the state database timed out"
    return "the state database could not be reached"


def _connect_once(conninfo: str, context: AdaptContext | None) -> psycopg.Connection:
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            return psycopg.connect(conninfo, context=context)
        except psycopg.OperationalError as exc:
            reason = _connect_failure(exc)
            permanent = getattr(exc, "sqlstate", None) in _PERMANENT_SQLSTATES
            if permanent or attempt == CONNECT_ATTEMPTS - 1:
                raise StateUnavailable(f"{reason}; {_HINT}") from None
            log.warning("state database connection failed (%s); retrying", reason)
            time.sleep(BACKOFF_S * 2**attempt)
    raise AssertionError("unreachable")


_engines: dict[str, sa.Engine] = {}
_inherited: list[sa.Engine] = []
_lock = threading.Lock()


def _forget_after_fork() -> None:
    # A forked child must not use (or close) its parent's sessions.
    global _lock
    _lock = threading.Lock()
    _inherited.extend(_engines.values())
    _engines.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def create_state_engine(url: str) -> sa.Engine:
    """A new pooled engine of the state database at `url` (most callers want state_engine's)."""
    conninfo = _conninfo(url)  # an unparsable URL fails now, not at first use
    engine = sa.create_engine(
        "postgresql+psycopg://",
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
        pool_timeout=POOL_TIMEOUT_S,
        pool_recycle=POOL_RECYCLE_S,
        hide_parameters=True,
        use_native_hstore=False,
    )

    @event.listens_for(engine, "do_connect")
    def open_session(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        # The URL never reaches SQLAlchemy, so neither its repr nor its errors can show it.
        return _connect_once(conninfo, cparams.get("context"))

    @event.listens_for(engine, "connect")
    def mark_fresh(dbapi_connection: Any, record: Any) -> None:
        record.info["fresh"] = True

    @event.listens_for(engine, "checkout")
    def ping(dbapi_connection: psycopg.Connection, record: Any, proxy: Any) -> None:
        if record.info.pop("fresh", False):
            return
        try:
            with answer_within(dbapi_connection, PING_TIMEOUT_S, "checking a pooled session"):
                dbapi_connection.execute("SELECT 1")
                dbapi_connection.rollback()
        except (SourceUnavailable, psycopg.Error):
            # A restarted database costs a reconnect, not an error: the pool opens another.
            raise sa.exc.DisconnectionError("a pooled state session was gone") from None

    return engine


def state_engine(url: str) -> sa.Engine:
    """The pooled engine of the state database at `url`, created once per process."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = create_state_engine(url)
        return engine


def dispose_state_engines() -> None:
    """Close every pooled state session (sessions in use when they are given back)."""
    with _lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.dispose()


atexit.register(dispose_state_engines)


@contextmanager
def state_errors(action: str) -> Iterator[None]:
    """Map the state database's failures while `action` runs to one-line StateUnavailable
    errors. A bug in tagflow's SQL propagates as the driver raised it."""
    try:
        yield
    except sa.exc.TimeoutError:
        raise StateUnavailable(
            f"{action}: all {POOL_SIZE + MAX_OVERFLOW} state database sessions were busy for "
            f"{POOL_TIMEOUT_S:g} s; retry later"
        ) from None
    except sa.exc.DBAPIError as exc:
        failure = _failure(exc.orig)
        if failure is None and not exc.connection_invalidated:
            raise (exc.orig if isinstance(exc.orig, psycopg.Error) else exc) from None
        raise StateUnavailable(f"{action}: {failure or _LOST}") from None
    except psycopg.Error as exc:
        failure = _failure(exc)
        if failure is None:
            raise
        raise StateUnavailable(f"{action}: {failure}") from None


# A write cut off before its commit left nothing; one cut off at its commit may have been kept.
_LOST = "the connection to the state database was lost; read the span before retrying"


def _failure(exc: BaseException | None) -> str | None:
    """The one-line reason for a driver error that no fix of the request would cure."""
    if isinstance(exc, pg_errors.LockNotAvailable):
        return f"another write held the span for {LOCK_TIMEOUT_S} s; retry"
    if isinstance(exc, pg_errors.DeadlockDetected | pg_errors.SerializationFailure):
        return "a concurrent write got in the way; retry"
    if isinstance(exc, pg_errors.QueryCanceled):
        return "the state database did not answer within the statement timeout; retry later"
    if isinstance(exc, psycopg.OperationalError):
        return _LOST
    return None
