"""A state database of its own for the annotation tests, on the session's PostgreSQL: one per
module (tests/conftest.py's state_url), and a fresh one where a test needs an empty database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tagflow.annotations import AnnotationStore, ComputedSpan
from tests.conftest import state_database, unique_tenant_name

T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)


def computed_span(tag: str = "reactor.temp", hours: float = 2.0) -> ComputedSpan:
    """A computed span from T0, `hours` long."""
    return ComputedSpan(tag, T0, T0 + timedelta(hours=hours))


@pytest.fixture
def fresh_state_url(pg_url: str, admin_conn: psycopg.Connection) -> Iterator[Callable[[], str]]:
    """Factory of empty state databases, dropped afterwards."""
    with ExitStack() as made:
        yield lambda: made.enter_context(state_database(pg_url, admin_conn))


@pytest.fixture
def store(state_url: str) -> AnnotationStore:
    return AnnotationStore.at(state_url)


@pytest.fixture
def tenant() -> str:
    return unique_tenant_name()
