"""A day's numeric samples at a coarser width: rolled up from the finer width, but computed from
the step function for the tags whose finer averages cancel so far (large averages of both signs,
a far smaller mean) that their rounding could move a coarse average by more than 1e-9 of it.

Such tags are rare, so computing them directly costs little and keeps every materialised width
exact against the step function, not only against the width below.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tagflow.transforms.columns import float_values, is_null, nullable_float, time_us
from tagflow.transforms.rollup import rollup_and_cancelling_tags
from tagflow.transforms.samples import samples
from tagflow.transforms.tag_order import TagOrder


def _of_tags(table: pa.Table, tag_ids: pa.Array) -> pa.Table:
    return table.filter(pc.is_in(table.column("tag_id"), tag_ids))


def coarse_numeric_samples(
    finer: pa.Table,
    width: timedelta,
    transitions: pa.Table,
    carry_in: pa.Table,
    order: TagOrder,
    day_start: datetime,
    day_end: datetime,
) -> pa.Table:
    """Numeric samples of the day at `width` from its `finer` numeric samples, with the twa of
    cancelling tags computed from `transitions` and `carry_in` (the day's, of the same tags)."""
    rolled, cancelling = rollup_and_cancelling_tags(finer, width)
    if len(cancelling) == 0:
        return rolled
    chosen = pa.array(cancelling, type=pa.int32())
    direct = samples(
        _of_tags(transitions, chosen), _of_tags(carry_in, chosen), day_start, day_end, width, order
    ).numeric
    # Both hold the same buckets of these tags (a coarse bucket exists iff a finer one does)
    # with the same covered time, min, max, first, last and count; only twa differs.
    tag_id = rolled.column("tag_id").to_numpy(zero_copy_only=False)
    bucket = time_us(rolled.column("bucket_start"))
    rows = np.flatnonzero(np.isin(tag_id, cancelling))
    rows = rows[np.lexsort((bucket[rows], tag_id[rows]))]
    direct_order = np.lexsort(
        (
            time_us(direct.column("bucket_start")),
            direct.column("tag_id").to_numpy(zero_copy_only=False),
        )
    )
    twa_column = rolled.column("twa")
    twa = float_values(twa_column).copy()
    twa[rows] = float_values(direct.column("twa"))[direct_order]
    index = rolled.schema.get_field_index("twa")
    return rolled.set_column(index, "twa", nullable_float(twa, is_null(twa_column)))
