"""Dagster's SQLite storage, with its connections kept open between events.

Dagster's own SQLite storages create a SQLAlchemy engine and open a new connection for every
read and write, and each commit waits for the disk (`synchronous=FULL`): 3.5 ms for an engine
event and 7.7 ms for a materialisation here, over a thousand events in a 30-day range run.
These subclasses keep one engine with a small pool per database file and commit with
`synchronous=NORMAL`, which in the WAL mode Dagster creates the files in still survives a
killed process whole; only an operating-system crash can lose the last commits (never the
file). The files and their schema are Dagster's own: a home made by either reads in the other.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tagflow.pipelines.dagster_internals import (
    INDEX_SHARD_NAME,
    ConfigurableClassData,
    DagsterSqliteStorage,
    SqliteEventLogStorage,
    SqliteRunStorage,
    SqliteScheduleStorage,
    event_logs_directory,
    runs_directory,
    schedule_directory,
)

# Dagster's wait for a locked file (its SQLITE_BUSY_TIMEOUT_SECONDS), kept for the pooled engines.
_BUSY_TIMEOUT_S = 30
# Each run has its own event-log file: a webserver reading many runs keeps only this many open.
_OPEN_FILES = 8


class _Engines:
    """One engine per database file, the least recently used closed beyond `_OPEN_FILES`."""

    def __init__(self) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, url: str) -> Engine:
        with self._lock:
            engine = self._engines.pop(url, None)
            if engine is None:
                engine = _engine(url)
            self._engines[url] = engine
            while len(self._engines) > _OPEN_FILES:
                self._engines.popitem(last=False)[1].dispose()
            return engine

    def dispose(self) -> None:
        with self._lock:
            while self._engines:
                self._engines.popitem()[1].dispose()


def _engine(url: str) -> Engine:
    engine = sa.create_engine(
        url,
        pool_size=2,
        max_overflow=4,
        connect_args={"timeout": _BUSY_TIMEOUT_S, "check_same_thread": False},
    )
    sa.event.listen(engine, "connect", _commit_without_waiting)
    return engine


def _commit_without_waiting(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


@contextmanager
def _transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as connection, connection.begin():
        yield connection


class _KeptEngine:
    """connect() through a kept engine, for Dagster's run and schedule storages: each holds
    one database file (`_conn_string`). Listed before the storage it serves."""

    _conn_string: str

    def __init__(self, conn_string: str, inst_data: ConfigurableClassData | None = None):
        super().__init__(conn_string, inst_data)  # type: ignore[call-arg]  # the storage's
        self._engines = _Engines()

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with _transaction(self._engines.get(self._conn_string)) as connection:
            yield connection

    def dispose(self) -> None:
        self._engines.dispose()
        super().dispose()  # type: ignore[misc]  # the storage's


class PooledSqliteRunStorage(_KeptEngine, SqliteRunStorage):
    pass


class PooledSqliteScheduleStorage(_KeptEngine, SqliteScheduleStorage):
    pass


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines = _Engines()
        self._tables: set[str] = set()
        super().__init__(base_dir, inst_data)

    def has_table(self, table_name: str) -> bool:
        # Asked before every partitioned output (does the dynamic-partitions table exist?),
        # each time through an engine of its own; a table, once there, stays.
        if table_name in self._tables:
            return True
        engine = self._engines.get(self.conn_string_for_shard(INDEX_SHARD_NAME))
        with engine.connect() as connection:
            found = bool(engine.dialect.has_table(connection, table_name))
        if found:
            self._tables.add(table_name)
        return found

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # As Dagster's: the lock also keeps the event-log watcher's thread out of a transaction.
        with self._db_lock:
            engine = self._engines.get(self.conn_string_for_shard(shard))
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with _transaction(engine) as connection:
                yield connection

    def wipe(self) -> None:
        # Dagster deletes the runs' files: connections kept open would go on writing to them.
        self._engines.dispose()
        super().wipe()

    def dispose(self) -> None:
        self._engines.dispose()
        super().dispose()


class PooledSqliteStorage(DagsterSqliteStorage):
    """The instance's storage (`storage: custom:` in dagster.yaml): Dagster's SQLite layout under
    `base_dir`, through the pooled storages above."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self.base_dir = base_dir
        self._run_storage = PooledSqliteRunStorage.from_local(runs_directory(base_dir))
        self._event_log_storage = PooledSqliteEventLogStorage(event_logs_directory(base_dir))
        self._schedule_storage = PooledSqliteScheduleStorage.from_local(
            schedule_directory(base_dir)
        )
        self._inst_data = inst_data
        # DagsterSqliteStorage.__init__ would build Dagster's own storages first.
        super(DagsterSqliteStorage, self).__init__()

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Any
    ) -> PooledSqliteStorage:
        return cls(inst_data=inst_data, **config_value)
