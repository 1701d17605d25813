"""The day's transform stages timed one by one, shared by the transform and end-to-end
benchmarks so both measure exactly the same pipeline."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

import pyarrow as pa

from tagflow.transforms.rollup import rollup
from tagflow.transforms.samples import samples
from tagflow.transforms.spans import spans_for_day
from tagflow.transforms.transitions import carry_in_for_day, resolve_rows

Result = TypeVar("Result")


def timed(label: str, timings: dict[str, float], run: Callable[[], Result]) -> Result:
    """Run `run`, store its wall time in seconds under `label`, return its result."""
    began = time.perf_counter()
    result = run()
    timings[label] = time.perf_counter() - began
    return result


def run_day(
    raw_rows: pa.Table,
    raw_carry_in: pa.Table,
    tags: pa.Table,
    day_start: datetime,
    tenant: str,
    timings: dict[str, float],
) -> tuple[dict[str, pa.Table], dict[str, int]]:
    """Every transform of one day, each stage timed into `timings`: (dataset → table, stats)."""
    day_end = day_start + timedelta(days=1)
    t = timings
    transitions, stats = timed("resolve_rows", t, lambda: resolve_rows(raw_rows, tags))
    carry_in = timed("carry_in_for_day", t, lambda: carry_in_for_day(raw_carry_in, tags, day_start))
    spans = timed(
        "spans_for_day",
        t,
        lambda: spans_for_day(transitions, carry_in, day_start, day_end, tags, tenant),
    )
    minutes = timed(
        "samples_1m",
        t,
        lambda: samples(transitions, carry_in, day_start, day_end, timedelta(minutes=1), tags),
    )
    hours = timed(
        "rollup_1h",
        t,
        lambda: (
            rollup(minutes.numeric, timedelta(hours=1)),
            rollup(minutes.string, timedelta(hours=1)),
        ),
    )
    days = timed(
        "rollup_1d",
        t,
        lambda: (rollup(hours[0], timedelta(days=1)), rollup(hours[1], timedelta(days=1))),
    )
    outputs = {
        "transitions": transitions,
        "carry_in": carry_in,
        "spans": spans,
        "samples_1m": minutes.numeric,
        "samples_str_1m": minutes.string,
        "samples_1h": hours[0],
        "samples_str_1h": hours[1],
        "samples_1d": days[0],
        "samples_str_1d": days[1],
    }
    return outputs, stats
