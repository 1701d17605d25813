"""How many trials the reliability suite runs: a bounded set always (CI), the full set with
TAGFLOW_FULL_RELIABILITY=1. Trials are seeded (TAGFLOW_RELIABILITY_SEED) so a failure replays."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., object])

FULL = os.environ.get("TAGFLOW_FULL_RELIABILITY", "") == "1"
SEED = int(os.environ.get("TAGFLOW_RELIABILITY_SEED", "20260302"))


def long_trial(test: F) -> F:
    """Mark a test as a long trial: skipped unless TAGFLOW_FULL_RELIABILITY=1."""
    test = pytest.mark.long_trial(test)
    return pytest.mark.skipif(
        not FULL, reason="long trial: set TAGFLOW_FULL_RELIABILITY=1 to run it"
    )(test)


def trials(bounded: int, full: int) -> int:
    """`full` trials with TAGFLOW_FULL_RELIABILITY=1, else `bounded`."""
    return full if FULL else bounded
