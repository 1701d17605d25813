"""A state database of its own for the annotation tests, on the session's PostgreSQL: one per
module, and a fresh one where a test needs an empty database."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from tagflow.annotations import AnnotationStore, ComputedSpan
from tagflow.annotations.state_database import database_on_server, dispose_state_engines

T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)


def computed_span(tag: str = "reactor.temp", hours: float = 2.0) -> ComputedSpan:
    """A computed span from T0, `hours` long."""
    return ComputedSpan(tag, T0, T0 + timedelta(hours=hours))


@pytest.fixture
def fresh_state_url(pg_url: str, admin_conn: psycopg.Connection) -> Iterator[Callable[[], str]]:
    """Factory of empty state databases, dropped afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"state_{uuid.uuid4().hex[:12]}"
        made.append(name)
        return database_on_server(pg_url, name)

    yield make
    dispose_state_engines()
    for name in made:
        admin_conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="module")
def state_url(pg_url: str, admin_conn: psycopg.Connection) -> Iterator[str]:
    name = f"state_{uuid.uuid4().hex[:12]}"
    yield database_on_server(pg_url, name)
    dispose_state_engines()
    admin_conn.execute(
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )


@pytest.fixture
def store(state_url: str) -> AnnotationStore:
    return AnnotationStore.at(state_url)


@pytest.fixture
def tenant() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"
