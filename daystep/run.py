"""One tenant-day, chunk by chunk: the raw rows of each chunk of whole tags and their carry-in
through the day's compute chain (transforms.day), the day's derived tags handed out between the
chunks they sort among, every table given to a sink: the audited writer of a materialisation
(daystep.materialise), or the read API's in-memory collector for the few tags a read asks for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tagflow.daystep.derived import DerivedInDay, HistoryOpener
from tagflow.source.day_stream import RawChunk
from tagflow.time_range import day_bounds
from tagflow.timing import Seconds, timed
from tagflow.transforms.day import compute_day
from tagflow.transforms.derived.day import DerivedPlan
from tagflow.transforms.tag_order import TagOrder


class DaySink(Protocol):
    """Where the day's tables go, chunk by chunk, in tag-name order."""

    def add(self, tables: dict[str, pa.Table]) -> None: ...


@dataclass(frozen=True)
class DayRun:
    """What a day's run counted (rows in, duplicates, orphans, derived transitions) and the
    version of its derived tags (part of the day's data version)."""

    counts: Counter[str]
    derived_version: str


def run_day(
    tenant: str,
    day: date,
    order: TagOrder,
    raw_carry_in: pa.Table,
    chunks: Iterator[RawChunk],
    sink: DaySink,
    *,
    derived: DerivedPlan | None = None,
    history: HistoryOpener | None = None,
    seconds: Seconds | None = None,
) -> DayRun:
    """Every dated dataset of `day` for the tags of `order` (and the `derived` tags, whose
    inputs' rows come first as a chunk marked derived_inputs; `history` opens the source for
    their walk back), given to `sink` chunk by chunk; `seconds` adds up read and compute time."""
    day_start, day_end = day_bounds(day)
    counts: Counter[str] = Counter()
    in_day = None
    if derived is not None:
        if history is None:
            raise ValueError("derived tags need the source's history for their walk back")
        in_day = DerivedInDay(derived, history, tenant, day_start, day_end, raw_carry_in)
    rank = 0  # source tags given so far: derived tags go in where their names sort
    while True:
        with timed(seconds, "read_s"):
            chunk = next(chunks, None)
        if chunk is None:
            break
        if in_day is not None:
            if chunk.derived_inputs:
                with timed(seconds, "derived_s"):
                    in_day.compute(chunk.rows)
                counts["derived_transitions"] += in_day.transitions
                continue
            for tables in in_day.due(rank if chunk.tag_ids is not None else len(order)):
                sink.add(tables)
            rank += 0 if chunk.tag_ids is None else len(chunk.tag_ids)
        carried = pc.is_in(raw_carry_in.column("tag_id"), value_set=_ids(chunk.tag_ids))
        with timed(seconds, "compute_s"):
            result = compute_day(
                chunk.rows, raw_carry_in.filter(carried), order, day_start, day_end, tenant
            )
        counts.update(result.counts)
        sink.add(result.tables)
    if in_day is not None:  # a read's few tags may sort before derived tags of the plan
        for tables in in_day.due(len(in_day.plan.source_names)):
            sink.add(tables)
    return DayRun(counts, in_day.version if in_day is not None else "")


def _ids(tag_ids: np.ndarray | None) -> pa.Array:
    return pa.array([] if tag_ids is None else tag_ids, type=pa.int32())
