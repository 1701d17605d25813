"""The state database: where it is (TAGFLOW_STATE_URL, or the `tagflow_state` database of the
demo's embedded server, created when missing), one pooled SQLAlchemy engine per URL with
tagflow's timeouts, and its failures as one-line StateUnavailable errors free of URLs, hosts and
SQL. Unlike the source's sessions these may write: this database belongs to tagflow."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import psycopg
import sqlalchemy as sa
from psycopg import conninfo as pg_conninfo
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.abc import AdaptContext

from tagflow.errors import InvalidArgument, StateUnavailable
from tagflow.settings import EMBEDDED_SOURCE
from tagflow.source.connection import libpq_url
from tagflow.source.embedded import embedded_server_url
from tagflow.source.engines import EngineRegistry, PoolSettings, pooled_engine
from tagflow.source.postgres import connect_with_retries, session_conninfo, url_params

DEFAULT_DATABASE = "tagflow_state"
CONNECT_TIMEOUT_S = 5
# A write is a few rows: anything slower is a database in trouble, not a big statement.
STATEMENT_TIMEOUT_S = 10
# How long a write waits for the row another writer of the same span holds.
LOCK_TIMEOUT_S = 10
CONNECT_ATTEMPTS = 3
BACKOFF_S = 0.2
# Kept open: as many sessions as writes a busy service runs at once (opening one costs more than
# a write); a session used in the last few seconds is not pinged (only checked for a server that
# ended it), so a read or a write is one round trip.
POOL = PoolSettings(
    size=16, overflow=16, timeout_s=10.0, recycle_s=1800, ping_timeout_s=5.0, ping_after_s=5.0
)

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
        conn = _connect(_conninfo(server_url), None)
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
    return url_params(
        libpq_url(url),
        unparsable=StateUnavailable(
            "the state database URL could not be parsed; expected "
            "postgresql://user:password@host:port/dbname"
        ),
    )


def _conninfo(url: str) -> str:
    """`url` with tagflow's timeouts, keepalives and session options."""
    return session_conninfo(
        _params(url),
        options=(
            f"-c statement_timeout={STATEMENT_TIMEOUT_S * 1000}"
            f" -c lock_timeout={LOCK_TIMEOUT_S * 1000}"
            " -c idle_in_transaction_session_timeout=60000"
            " -c TimeZone=UTC -c DateStyle=ISO"
        ),
        connect_timeout_s=CONNECT_TIMEOUT_S,
        application_name="tagflow-state",
    )


def _connect(conninfo: str, context: AdaptContext | None) -> psycopg.Connection:
    """A session on the state database, retried CONNECT_ATTEMPTS times with backoff."""
    return connect_with_retries(
        lambda: psycopg.connect(conninfo, context=context),
        database="the state database",
        give_up=lambda reason, attempts, permanent: StateUnavailable(f"{reason}; {_HINT}"),
        attempts=CONNECT_ATTEMPTS,
        backoff_s=BACKOFF_S,
    )


def create_state_engine(url: str) -> sa.Engine:
    """A new pooled engine of the state database at `url` (most callers want state_engine's).
    Its sessions autocommit: a read or a write is one statement, atomic by itself, in one round
    trip; work of several statements runs in `transactional(engine)`."""
    conninfo = _conninfo(url)  # an unparsable URL fails now, not at first use
    return pooled_engine(
        lambda context: _connect(conninfo, context),
        POOL,
        autocommit=True,
        sessions_of="state",
    )


def transactional(engine: sa.Engine) -> sa.Engine:
    """`engine` with its sessions in transactions (READ COMMITTED) while checked out: for
    `engine.begin()` blocks of several statements that commit together."""
    return engine.execution_options(isolation_level="READ COMMITTED")


_engines = EngineRegistry(create_state_engine)


T = TypeVar("T")


class PerEngine(Generic[T]):
    """One T per state database engine in this process, made on first use, dropped with the
    engine: what the process keeps of a state database (its annotations, the records it last
    wrote) belongs to that database alone."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._kept: weakref.WeakKeyDictionary[sa.Engine, T] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def of(self, engine: sa.Engine) -> T:
        with self._lock:
            kept = self._kept.get(engine)
            if kept is None:
                kept = self._kept[engine] = self._make()
            return kept


def state_engine(url: str) -> sa.Engine:
    """The pooled engine of the state database at `url`, created once per process."""
    return _engines.engine(url)


def dispose_state_engines() -> None:
    """Close every pooled state session (sessions in use when they are given back)."""
    _engines.dispose()


@contextmanager
def state_errors(action: str) -> Iterator[None]:
    """Map the state database's failures while `action` runs to one-line StateUnavailable
    errors. A bug in tagflow's SQL propagates as the driver raised it."""
    try:
        yield
    except sa.exc.TimeoutError:
        raise StateUnavailable(
            f"{action}: all {POOL.size + POOL.overflow} state database sessions were busy for "
            f"{POOL.timeout_s:g} s; retry later"
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
