"""Hypothesis-generated sequences of updates by several writers, interleaved, some starting from
stale revisions, checked against a plain in-memory model of DESIGN §9: the final records and
every history row must be what the model says."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tagflow.annotations import COMPUTED_BOUND, AnnotationStore
from tagflow.errors import Conflict, InvalidAnnotation
from tests.annotations.conftest import T0, computed_span

SPANS = [11, 22, -33]
WRITERS = ["ann", "ben", "cho"]
COMPUTED = computed_span(hours=4)


@dataclass
class ModelSpan:
    content: dict[str, Any] = field(
        default_factory=lambda: {
            "labels": {},
            "note": "",
            "begin_at": None,
            "end_at": None,
            "hidden": False,
            "moved_to": None,
        }
    )
    revision: int = 0
    history: list[tuple[int, dict | None, dict, str]] = field(default_factory=list)


def _iso(offset_min: int | None):
    return None if offset_min is None else (T0 + timedelta(minutes=offset_min)).isoformat()


bounds = st.one_of(st.none(), st.just("computed"), st.integers(-60, 300))
updates = st.fixed_dictionaries(
    {},
    optional={
        "labels": st.dictionaries(st.sampled_from("abc"), st.sampled_from(["x", "y"]), max_size=2),
        "note": st.sampled_from(["", "valve", "baseline"]),
        "begin_at": bounds,
        "end_at": bounds,
        "hidden": st.booleans(),
    },
)
steps = st.lists(
    st.tuples(
        st.sampled_from(WRITERS),
        st.sampled_from(SPANS),
        st.sampled_from(["update", "update", "update", "refresh"]),
        updates,
    ),
    min_size=1,
    max_size=25,
)


def _arguments(update: dict[str, Any]) -> dict[str, Any]:
    arguments = dict(update)
    for name in ("begin_at", "end_at"):
        if name in arguments and arguments[name] is not None:
            offset = arguments[name]
            arguments[name] = (
                COMPUTED_BOUND if offset == "computed" else T0 + timedelta(minutes=offset)
            )
    return arguments


def _model_apply(span: ModelSpan, update: dict[str, Any]) -> dict[str, Any] | None:
    """The content after `update`, or None if it breaks the bounds' order."""
    after = {**span.content, "labels": dict(span.content["labels"])}
    for name, value in update.items():
        if value is None:
            continue
        if name in ("begin_at", "end_at"):
            after[name] = None if value == "computed" else _iso(value)
        else:
            after[name] = value
    begin = after["begin_at"] or COMPUTED.begin_at.isoformat()
    end = after["end_at"] or COMPUTED.end_at.isoformat()
    if datetime.fromisoformat(begin) >= datetime.fromisoformat(end):
        return None
    return after


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=steps)
def test_interleaved_writers_match_the_model(store: AnnotationStore, steps):
    tenant = f"m_{uuid.uuid4().hex[:12]}"
    model = {span_id: ModelSpan() for span_id in SPANS}
    seen = {(w, s): 0 for w in WRITERS for s in SPANS}
    for writer, span_id, action, update in steps:
        span = model[span_id]
        if action == "refresh":
            current = store.get(tenant, span_id)
            seen[writer, span_id] = 0 if current is None else current.revision
            assert seen[writer, span_id] == span.revision
            continue
        started = seen[writer, span_id]
        after = _model_apply(span, update)
        try:
            record = store.update(
                tenant,
                span_id,
                revision=started,
                by=writer,
                computed=COMPUTED,
                **_arguments(update),
            )
        except Conflict as refused:
            assert started != span.revision
            assert refused.current.revision == span.revision
            seen[writer, span_id] = span.revision
            continue
        except InvalidAnnotation:
            assert started == span.revision and after is None
            continue
        assert started == span.revision and after is not None
        if after != span.content:
            span.history.append((span.revision + 1, span.content, after, writer))
            span.content, span.revision = after, span.revision + 1
        assert record.revision == span.revision and record.content() == span.content
        seen[writer, span_id] = span.revision

    for span_id, span in model.items():
        stored = store.get(tenant, span_id)
        if span.revision == 0:
            assert stored is None
        else:
            assert stored.revision == span.revision and stored.content() == span.content
        history = [(c.revision, c.before, c.after, c.by) for c in store.history(tenant, span_id)]
        assert history == span.history
