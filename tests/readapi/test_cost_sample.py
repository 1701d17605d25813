"""The days whose tag directories judge whether wide buckets are computed from transitions or
rolled up: a few, spread over the range, first and last included (from two picks up)."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from tagflow.readapi.engine.reader import _spread


@given(st.integers(0, 800), st.integers(1, 20))
def test_a_few_days_spread_over_the_range(count, most):
    days = [date(2025, 1, 1) + timedelta(days=k) for k in range(count)]
    picked = _spread(days, most)
    assert len(picked) == min(count, most)
    assert picked == sorted(set(picked)) and set(picked) <= set(days)
    if days:
        assert picked[0] == days[0]
        assert picked[-1] == days[-1] or most == 1
