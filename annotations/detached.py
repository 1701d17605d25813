"""Detached annotations (DESIGN §9): annotations of computed spans that a rerun or late data no
longer computes. A computed span's id hashes its tag and raw begin, so the span an annotation
was written on began on the day its stored computed_begin_at falls in; if that day's published
spans no longer hold its id, the annotation is detached. It is kept (the day's check warns with
its id), until a person moves it to another span or keeps it as a span of their own."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tagflow.annotations.store import AnnotationStore


def detached_span_ids(
    annotations: AnnotationStore,
    tenant: str,
    day_start: datetime,
    day_end: datetime,
    computed_ids: pa.Array | np.ndarray,
) -> list[int]:
    """The ids, ascending, of `tenant`'s annotations of computed spans that began in
    [day_start, day_end) but are not among `computed_ids` (the day's published span ids).
    Annotations already moved to another span are settled, not detached."""
    found = annotations.for_read(tenant, day_start, day_end, computed_since=day_start)
    begin = found["computed_begin_at"]
    of_day = pc.and_(
        pc.and_(pc.equal(found["origin"], "computed"), pc.is_null(found["moved_to"])),
        pc.and_(
            pc.greater_equal(begin, pa.scalar(day_start, begin.type)),
            pc.less(begin, pa.scalar(day_end, begin.type)),
        ),
    )
    candidates = found["span_id"].filter(pc.fill_null(of_day, False))
    still_computed = pc.is_in(candidates, value_set=pa.array(computed_ids, pa.int64()))
    return sorted(candidates.filter(pc.invert(still_computed)).to_pylist())
