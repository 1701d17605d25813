"""Span annotation writes on the wire (DESIGN §9): the JSON form of the Span a write answers
with and of a history's changes, written by the service and read back by the client, so both
transports return the same records. Times are ISO 8601 text in UTC. A span's value travels as
the spans answer's JSON rows carry it: `value_double` (non-finite numbers as the strings 'NaN',
'Infinity', '-Infinity', since JSON has none) or `value_string`, so a string value 'NaN' and
the number NaN stay apart."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Final

from tagflow.readapi.models import Span, SpanChange

# A bound given as COMPUTED drops its correction: the span is back to its computed bound
# (`update_span(id, revision=r, begin_at=COMPUTED)`; a JSON null in the service's PATCH body).
COMPUTED: Final = "computed"

_SPAN_TIMES = ("begin_at", "end_at", "raw_begin_at", "raw_end_at")
_METADATA_TIMES = ("updated_at", "computed_begin_at", "computed_end_at")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _time(text: object) -> datetime | None:
    return None if text is None else datetime.fromisoformat(str(text))


def span_json(span: Span) -> dict[str, Any]:
    """A Span as the service answers it."""
    body: dict[str, Any] = {"id": span.id, "tag_name": span.tag_name}
    body.update(_value_json(span.value))
    body.update({name: _iso(getattr(span, name)) for name in _SPAN_TIMES})
    metadata = dict(span.metadata or {})
    for name in _METADATA_TIMES:
        if name in metadata:
            metadata[name] = _iso(metadata[name])
    body["metadata"] = metadata if span.metadata is not None else None
    return body


def _value_json(value: float | str | None) -> dict[str, Any]:
    if isinstance(value, str):
        return {"value_double": None, "value_string": value}
    if value is not None and not math.isfinite(value):
        text = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return {"value_double": text, "value_string": None}
    return {"value_double": value, "value_string": None}


def _value(body: dict[str, Any]) -> float | str | None:
    text, number = body.get("value_string"), body.get("value_double")
    if text is not None:
        return str(text)
    # float() reads the 'NaN' / 'Infinity' / '-Infinity' a non-finite number travels as.
    return None if number is None else float(number)


def span_from_json(body: dict[str, Any]) -> Span:
    """The Span of a service's answer."""
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        metadata = dict(metadata)
        for name in _METADATA_TIMES:
            if name in metadata:
                metadata[name] = _time(metadata[name])
    times = [_time(body.get(name)) for name in _SPAN_TIMES]
    begin, end, raw_begin = times[0], times[1], times[2]
    assert begin is not None and end is not None and raw_begin is not None
    return Span(
        int(body["id"]),
        str(body["tag_name"]),
        _value(body),
        begin,
        end,
        raw_begin,
        times[3],
        metadata,
    )


def change_json(change: SpanChange) -> dict[str, Any]:
    return {
        "revision": change.revision,
        "before": change.before,
        "after": change.after,
        "by": change.by,
        "at": _iso(change.at),
    }


def change_from_json(body: dict[str, Any]) -> SpanChange:
    at = _time(body["at"])
    assert at is not None
    return SpanChange(int(body["revision"]), body.get("before"), body["after"], str(body["by"]), at)
