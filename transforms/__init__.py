"""The semantics (DESIGN §2, §8) as pure Arrow → Arrow transforms: the day's chain from raw
rows to transitions, spans, LOCF samples and roll-ups, and derived tags (no Dagster)."""

from tagflow.transforms.rollup import rollup
from tagflow.transforms.samples import SamplesResult, samples
from tagflow.transforms.spans import span_ids, spans_for_day
from tagflow.transforms.transitions import carry_in_for_day, resolve_rows

__all__ = [
    "SamplesResult",
    "carry_in_for_day",
    "resolve_rows",
    "rollup",
    "samples",
    "span_ids",
    "spans_for_day",
]
