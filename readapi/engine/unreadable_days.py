"""Reads over a stored day whose file cannot be read (zero bytes, truncated, corrupted): the
day is set aside in the coverage index, as if it were not materialised, and the read answered
again, that day from the source, exactly as a day never materialised. Without a source (or
when the read refuses it) the read's answer is the typed CorruptPartition."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pyarrow as pa

from tagflow.errors import CorruptPartition
from tagflow.readapi.engine.coverage import CoverageIndex
from tagflow.readapi.query import Query


def answer_around_unreadable_days(
    answer: Callable[[Query], pa.Table],
    query: Query,
    tenant: str,
    coverage: CoverageIndex,
    source_allowed: bool,
) -> pa.Table:
    """`answer(query)`, with each stored day found unreadable set aside and answered from the
    source when `source_allowed`; else (or for the undated tags) the CorruptPartition."""
    set_aside: set[tuple[str, date]] = set()
    while True:
        try:
            return answer(query)
        except CorruptPartition as error:
            if not source_allowed or error.day is None or error.tenant != tenant:
                raise
            place = (error.dataset or "", error.day)
            if place in set_aside:  # set aside and still read: never loop
                raise
            set_aside.add(place)
            coverage.set_aside(tenant, place[0], error.day)
