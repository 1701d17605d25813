"""Span annotations (DESIGN §9): the durable, versioned layer people write over the computed
spans (labels, notes, corrected bounds, hidden spans, spans of their own), kept in tagflow's own
state database with the history of every change. The read API merges it into its answers."""

from tagflow.annotations.records import (
    COMPUTED_BOUND,
    Annotation,
    ComputedSpan,
    SpanChange,
    is_user_span_id,
)
from tagflow.annotations.state_database import state_engine, state_url
from tagflow.annotations.store import ANNOTATION_COLUMNS, AnnotationStore

__all__ = [
    "ANNOTATION_COLUMNS",
    "COMPUTED_BOUND",
    "Annotation",
    "AnnotationStore",
    "ComputedSpan",
    "SpanChange",
    "is_user_span_id",
    "state_engine",
    "state_url",
]
