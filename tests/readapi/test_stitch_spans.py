"""stitch_spans (readapi/engine/assembly.py) joins a run's pieces across days; one tag's pieces
in time order (a month copy's) are joined without a sort. Whatever order the pieces come in,
the runs are the same."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given
from hypothesis import strategies as st

from tagflow.readapi.engine.assembly import stitch_spans
from tagflow.transforms.columns import time_us
from tests.transforms.builders import DAY, HOUR, Window
from tests.transforms.test_against_reference import MIDNIGHTS, SETTINGS, TENANT, histories


def same(a: pa.Table, b: pa.Table) -> bool:
    """Equal tables, NaN values equal where both hold one (Arrow's equals says NaN != NaN)."""
    return a.schema == b.schema and a.to_pandas().equals(b.to_pandas())


@SETTINGS
@given(histories(), st.integers(0, 2**32 - 1), st.sampled_from([0, 5 * HOUR]))
def test_runs_do_not_depend_on_the_order_of_their_pieces(history, seed, clipped):
    rows, tags = history
    days = [Window(rows, tags, d0, d0 + DAY, TENANT).spans() for d0 in MIDNIGHTS]
    pieces = pa.concat_tables(days)
    start, end = MIDNIGHTS[0] + clipped, MIDNIGHTS[-1] + DAY - clipped
    shuffle = np.random.default_rng(seed).permutation
    for tag_id in pc.unique(pieces.column("tag_id")).to_pylist():
        mine = pieces.filter(pc.equal(pieces.column("tag_id"), tag_id))
        begins = time_us(mine.column("begin_at"))
        assert (begins[1:] >= begins[:-1]).all()  # a tag's days in order: joined unsorted
        shuffled = mine.take(pa.array(shuffle(mine.num_rows)))
        assert same(stitch_spans(mine, start, end), stitch_spans(shuffled, start, end))
    # Several tags at once are sorted: the same runs, newest first.
    whole = stitch_spans(pieces, start, end)
    assert same(whole, stitch_spans(pieces.take(pa.array(shuffle(pieces.num_rows))), start, end))
    raw_begins = time_us(whole.column("raw_begin_at"))
    assert (raw_begins[1:] <= raw_begins[:-1]).all()
