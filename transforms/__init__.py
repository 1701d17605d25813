"""Pure Arrow → Arrow transforms: transitions, spans, LOCF samples and roll-ups (no Dagster)."""

from transforms.rollup import rollup
from transforms.samples import SamplesResult, samples
from transforms.spans import span_ids, spans_for_day
from transforms.transitions import carry_in_for_day, resolve_rows

__all__ = [
    "SamplesResult",
    "carry_in_for_day",
    "resolve_rows",
    "rollup",
    "samples",
    "span_ids",
    "spans_for_day",
]
