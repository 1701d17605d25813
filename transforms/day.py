"""The day's compute chain, in one place: raw source rows and the raw carry-in → transitions and
carry-in (duplicates resolved) → spans → samples at every width of the dataset registry, each
from the step function itself.

The assets run it on each chunk of whole tags of a day, the read API's source fallback on the
tags a read asks for, the benchmarks on a generated day. Every semantic is per tag, so a day
computed chunk by chunk equals the day computed at once, chunk for chunk.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa

from tagflow.schemas.registry import WIDTHS, samples_name
from tagflow.timing import Seconds, timed
from tagflow.transforms.samples import samples
from tagflow.transforms.spans import spans_for_day
from tagflow.transforms.tag_order import TagOrder
from tagflow.transforms.transitions import carry_in_for_day, resolve_rows


@dataclass
class DayResult:
    """Every dated dataset of a day (or of one chunk of its tags), and the resolution counts
    (rows_in, duplicates_dropped, orphans_skipped)."""

    tables: dict[str, pa.Table]
    counts: Counter[str] = field(default_factory=Counter)


def spans_and_samples(
    transitions: pa.Table,
    carry_in: pa.Table,
    order: TagOrder,
    day_start: datetime,
    day_end: datetime,
    tenant: str,
    seconds: Seconds | None = None,
) -> dict[str, pa.Table]:
    """Spans and the samples at every materialised width, from resolved transitions and the
    carry-in of the same tags; `seconds`, if given, adds up the time of each stage."""
    with timed(seconds, "spans"):
        tables = {"spans": spans_for_day(transitions, carry_in, day_start, day_end, order, tenant)}
    # Each width from the step function, not rolled up from the width below: an hour is split
    # into one piece per transition and hour, 9x fewer rows than its minutes (a day of 2,000
    # tags: 0.05 s against 0.35 to 0.65 s), and no finer average's rounding can reach it.
    for width_name, width in WIDTHS.items():
        with timed(seconds, f"samples_{width_name}"):
            result = samples(transitions, carry_in, day_start, day_end, width, order)
        tables[samples_name(width_name, False)] = result.numeric
        tables[samples_name(width_name, True)] = result.string
    return tables


def compute_day(
    raw_rows: pa.Table,
    raw_carry_in: pa.Table,
    tags: pa.Table | TagOrder,
    day_start: datetime,
    day_end: datetime,
    tenant: str,
    seconds: Seconds | None = None,
) -> DayResult:
    """The whole chain for the rows of [day_start, day_end) and the raw carry-in before it;
    `seconds`, if given, adds up the time of each stage."""
    order = TagOrder.of(tags)
    with timed(seconds, "resolve"):
        transitions, counts = resolve_rows(raw_rows, order)
        carry_in = carry_in_for_day(raw_carry_in, order, day_start)
    tables = {"transitions": transitions, "carry_in": carry_in}
    tables |= spans_and_samples(transitions, carry_in, order, day_start, day_end, tenant, seconds)
    return DayResult(tables, Counter(counts))
