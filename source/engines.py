"""One pooled SQLAlchemy engine (psycopg 3 driver) per source URL, and sessions checked out of it.

Every read of the source but the bulk day stream (ADBC, a session of its own) goes through
`source_session`: a pooled, read-only, autocommit psycopg connection with tagflow's timeouts
and keepalives (source.connection), opened with its retries and backoff, so one tenant-day
costs one pooled session instead of one per query. A session idle in the pool is pinged (within
POOL.ping_timeout_s) before it is handed out, so a database restart or a terminated backend costs a
reconnect, not an error; a session that broke while checked out is closed, never pooled again.
With a tenant, the session's tenant is checked first (source.schema_drift): its tables must
match the DDL. The registry of engines and the pooled engine serve tagflow's state database too.
"""

from __future__ import annotations

import atexit
import math
import os
import select
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.abc import AdaptContext
from psycopg.pq import TransactionStatus
from sqlalchemy import event

from tagflow.errors import SourceUnavailable
from tagflow.source.connection import answer_within, connect, source_conninfo, source_errors
from tagflow.source.schema_drift import psycopg_connection, require_schema

# Engines kept at once (one per distinct URL: the discovery role's, and with
# tenant_url_template one per tenant role); the least recently used is disposed beyond it.
MAX_ENGINES = 32


@dataclass(frozen=True)
class PoolSettings:
    """The sessions of one pooled engine: `size` kept open between uses, `overflow` more opened
    for a burst (closed when given back), `timeout_s` a caller waits for a free one,
    `recycle_s` after which one is replaced when next checked out (a failover, a proxy's idle
    cut), and `ping_timeout_s` bounding the liveness check of an idle one (a peer that went
    silent must not hold it). A session given back less than `ping_after_s` ago is only
    checked for what a server that ended it sends (a restart, a terminated backend: the socket
    turns readable) instead of a round trip; 0 pings every checkout."""

    size: int
    overflow: int
    timeout_s: float
    recycle_s: float
    ping_timeout_s: float
    ping_after_s: float = 0.0


# The day step uses one session, plus its ADBC stream; the read service one per concurrent
# source read, the rest waiting for a free one.
POOL = PoolSettings(size=4, overflow=12, timeout_s=30.0, recycle_s=1800, ping_timeout_s=5.0)


class EngineRegistry:
    """One engine per URL in this process, made by `create` when first asked for; beyond
    `most` engines the least recently used is disposed. Every engine is disposed when the
    process exits, so pooled sessions end with a goodbye to the server, not a dropped socket."""

    def __init__(self, create: Callable[[str], sa.Engine]) -> None:
        self._create = create
        self._engines: OrderedDict[str, sa.Engine] = OrderedDict()
        # Engines a forked child inherited: kept referenced, never used or closed (their sockets
        # are the parent's sessions, which a close in the child would end).
        self._inherited: list[sa.Engine] = []
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget_after_fork)
        atexit.register(self.dispose)

    def _forget_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._inherited.extend(self._engines.values())
        self._engines.clear()

    def __contains__(self, url: str) -> bool:
        return url in self._engines

    def __len__(self) -> int:
        return len(self._engines)

    def current(self, url: str) -> sa.Engine | None:
        """The engine of `url` if one is held now (None once disposed or never made)."""
        return self._engines.get(url)

    def engine(self, url: str, *, most: int | None = None) -> sa.Engine:
        """The engine of `url`, made on first use."""
        with self._lock:
            engine = self._engines.get(url)
            if engine is not None:
                self._engines.move_to_end(url)
                return engine
            engine = self._engines[url] = self._create(url)
            while most is not None and len(self._engines) > most:
                _, evicted = self._engines.popitem(last=False)
                evicted.dispose()  # idle sessions closed; checked-out ones when given back
            return engine

    def dispose(self) -> None:
        """Close every pooled session (sessions in use when they are given back)."""
        with self._lock:
            engines = list(self._engines.values())
            self._engines.clear()
        for engine in engines:
            engine.dispose()


def pooled_engine(
    open_session: Callable[[AdaptContext | None], psycopg.Connection],
    pool: PoolSettings,
    *,
    autocommit: bool,
    sessions_of: str,
) -> sa.Engine:
    """A pooled engine whose sessions `open_session` opens (given SQLAlchemy's type adapters),
    so the URL never reaches SQLAlchemy and neither its repr nor its errors can show it. A
    session idle in the pool is pinged within `pool.ping_timeout_s` when checked out; a gone one
    (named "a pooled {sessions_of} session") is replaced, not an error."""
    engine = sa.create_engine(
        "postgresql+psycopg://",
        pool_size=pool.size,
        max_overflow=pool.overflow,
        pool_timeout=pool.timeout_s,
        pool_recycle=pool.recycle_s,
        # Statements never appear in errors' parameters, nor is hstore looked up on connect.
        hide_parameters=True,
        use_native_hstore=False,
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
    )

    @event.listens_for(engine, "do_connect")
    def open_pooled(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        return open_session(cparams.get("context"))

    @event.listens_for(engine, "connect")
    def mark_fresh(dbapi_connection: Any, record: Any) -> None:
        record.info["fresh"] = True

    @event.listens_for(engine, "checkin")
    def mark_returned(dbapi_connection: Any, record: Any) -> None:
        record.info["returned"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping(dbapi_connection: psycopg.Connection, record: Any, proxy: Any) -> None:
        if record.info.pop("fresh", False):
            return  # just opened: alive
        returned = record.info.get("returned", -math.inf)
        if time.monotonic() - returned < pool.ping_after_s and _quiet(dbapi_connection):
            return  # in use a moment ago, and the server has said nothing since
        try:
            with answer_within(dbapi_connection, pool.ping_timeout_s, "checking a pooled session"):
                dbapi_connection.execute("SELECT 1")
                if not autocommit:
                    dbapi_connection.rollback()  # the ping's transaction, not the user's
        except (SourceUnavailable, psycopg.Error):
            # A restarted database costs a reconnect, not an error: the pool opens another.
            raise sa.exc.DisconnectionError(f"a pooled {sessions_of} session was gone") from None

    return engine


def _quiet(conn: psycopg.Connection) -> bool:
    """Whether an idle session's socket has nothing to read: a server that ends a session (a
    shutdown, pg_terminate_backend) sends its reason and closes it, which makes it readable."""
    if conn.closed or conn.broken:
        return False
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
    return not poller.poll(0)


def _create_engine(url: str) -> sa.Engine:
    source_conninfo(url)  # an unparsable URL is SourceUnavailable now, not at first use
    return pooled_engine(
        # tagflow's own session: timeouts, read-only, keepalives, retries with backoff.
        lambda context: connect(url, context=context),
        POOL,
        autocommit=True,
        sessions_of="source",
    )


_engines = EngineRegistry(_create_engine)


def source_engine(url: str) -> sa.Engine:
    """The pooled engine of `url` (a libpq or SQLAlchemy URL, or conninfo), created once."""
    return _engines.engine(url, most=MAX_ENGINES)


def _give_back(conn: sa.Connection, url: str) -> None:
    """Return the session to its pool, or close it if it cannot serve another user as is:
    broken, closed, left inside a transaction or a COPY, or of an engine since disposed."""
    if not conn.invalidated:
        driver = conn.connection.driver_connection
        if (
            _engines.current(url) is not conn.engine
            or driver is None
            or driver.closed
            or driver.broken
            or driver.info.transaction_status != TransactionStatus.IDLE
        ):
            conn.invalidate()
    conn.close()


@contextmanager
def source_session(
    url: str, *, tenant: str | None = None, within_s: float | None = None
) -> Iterator[psycopg.Connection]:
    """A pooled psycopg session on the source for the block (given back after it).

    With `tenant`, the tenant is checked first: UnknownTenant if it does not exist,
    SchemaDrift if its tables drifted from the DDL (a passed check is remembered for a while).
    `within_s` bounds that check's wall time. A source that cannot be reached, or a pool
    whose sessions are all busy for POOL.timeout_s, is SourceUnavailable."""
    engine = source_engine(url)
    with source_errors("connecting to the source database"):
        try:
            conn = engine.connect()
        except sa.exc.TimeoutError:
            raise SourceUnavailable(
                f"all {POOL.size + POOL.overflow} sessions to the source database were busy "
                f"for {POOL.timeout_s:g} s; retry later"
            ) from None
    try:
        if tenant is not None:
            require_schema(conn, url, tenant, within_s)
        yield psycopg_connection(conn)
    finally:
        _give_back(conn, url)
