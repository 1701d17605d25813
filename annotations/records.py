"""What an annotation is (DESIGN §9): the current record of one span, one change of its history,
the computed span it corrects, and the rules a write must pass before anything is stored."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from tagflow.errors import InvalidAnnotation, UnknownSpan
from tagflow.transforms.spans import USER_SPAN_ID_COUNT, USER_SPAN_ID_MIN

MAX_LABELS = 64
MAX_LABEL_KEY_CHARS = 128
MAX_LABEL_VALUE_BYTES = 4 * 1024
MAX_NOTE_BYTES = 64 * 1024
MAX_AUTHOR_CHARS = 200
# Bounds are stored and read to the microsecond inside these years (the store's columnar reads
# carry times as float64 seconds on the way: exact within 285 years of 1970).
MIN_YEAR, MAX_YEAR = 1800, 2200


Origin = Literal["computed", "user"]


def is_user_span_id(span_id: int) -> bool:
    """Whether `span_id` lies in the range of the spans people add."""
    return USER_SPAN_ID_MIN <= span_id < USER_SPAN_ID_MIN + USER_SPAN_ID_COUNT


class ComputedBound:
    """The value that resets a corrected bound to the computed one."""

    def __repr__(self) -> str:
        return "COMPUTED_BOUND"


# `update(..., begin_at=COMPUTED_BOUND)` drops a correction (None leaves the bound as it is).
COMPUTED_BOUND = ComputedBound()


@dataclass(frozen=True)
class ComputedSpan:
    """The computed span an update annotates, as the datasets hold it now: its tag and raw
    bounds (end None while the run has not ended). The store checks corrected bounds against it
    and keeps it with the record, so a detached annotation still says where its span was."""

    tag_name: str
    begin_at: datetime
    end_at: datetime | None


@dataclass(frozen=True)
class Annotation:
    """The current state of one span's annotation. `begin_at` / `end_at` are the corrections
    (None keeps the computed bound); for a person's span they are its own bounds.
    `computed_begin_at` / `computed_end_at` are the computed bounds when last written (None for a
    person's span). Revision 0 with no `updated_at` is a span nobody has changed yet."""

    tenant: str
    span_id: int
    origin: Origin
    tag_name: str | None
    labels: dict[str, str] = field(default_factory=dict)
    note: str = ""
    begin_at: datetime | None = None
    end_at: datetime | None = None
    hidden: bool = False
    revision: int = 0
    updated_at: datetime | None = None
    updated_by: str | None = None
    computed_begin_at: datetime | None = None
    computed_end_at: datetime | None = None
    # Where a detached annotation went (AnnotationStore.move): the span that now carries it.
    moved_to: int | None = None

    def content(self) -> dict[str, Any]:
        """What a person changes, JSON-ready: the before / after of a history row."""
        return {
            "labels": dict(self.labels),
            "note": self.note,
            "begin_at": _iso(self.begin_at),
            "end_at": _iso(self.end_at),
            "hidden": self.hidden,
            "moved_to": self.moved_to,
        }


@dataclass(frozen=True)
class SpanChange:
    """One change of a span's annotation: revision it made, content before (None for the
    change that created the record) and after, the writer's key label and the server time."""

    revision: int
    before: dict[str, Any] | None
    after: dict[str, Any]
    by: str
    at: datetime


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def checked_span_id(tenant: str, span_id: object) -> int:
    """`span_id` if it is a whole number that can be an id (a signed 64-bit integer): any other
    number is a span that cannot exist."""
    if not isinstance(span_id, int) or isinstance(span_id, bool):
        raise InvalidAnnotation(f"a span id is a whole number, got {type(span_id).__name__}")
    if not -(2**63) <= span_id < 2**63:
        raise UnknownSpan(f"no span {span_id} for tenant {tenant}")
    return span_id


def checked_moment(name: str, moment: datetime) -> datetime:
    """`moment` in UTC if it is a timezone-aware datetime of the years MIN_YEAR to MAX_YEAR."""
    if not isinstance(moment, datetime):
        raise InvalidAnnotation(f"{name} must be a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidAnnotation(f"{name} must carry a timezone (e.g. UTC); got a naive datetime")
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise InvalidAnnotation(f"{name} must lie in the years {MIN_YEAR} to {MAX_YEAR}")
    return moment.astimezone(UTC)


def checked_labels(labels: object) -> dict[str, str]:
    """`labels` as a plain dict if it is a string → string map within the limits."""
    if not isinstance(labels, Mapping):
        raise InvalidAnnotation("labels must be a map of strings to strings")
    if len(labels) > MAX_LABELS:
        raise InvalidAnnotation(f"at most {MAX_LABELS} labels per span, got {len(labels)}")
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidAnnotation("labels must be a map of strings to strings")
        if not key or len(key) > MAX_LABEL_KEY_CHARS:
            raise InvalidAnnotation(
                f"a label key must have 1 to {MAX_LABEL_KEY_CHARS} characters, got {len(key)}"
            )
        if "\x00" in key or "\x00" in value:
            raise InvalidAnnotation("labels cannot contain NUL characters")
        if len(value.encode()) > MAX_LABEL_VALUE_BYTES:
            raise InvalidAnnotation(
                f"label {key[:40]!r} is over {MAX_LABEL_VALUE_BYTES} bytes (UTF-8)"
            )
    return dict(labels)


def checked_note(note: object) -> str:
    """`note` if it is a string within the limit."""
    if not isinstance(note, str):
        raise InvalidAnnotation("note must be a string")
    if "\x00" in note:
        raise InvalidAnnotation("a note cannot contain NUL characters")
    if len(note.encode()) > MAX_NOTE_BYTES:
        raise InvalidAnnotation(f"note is over {MAX_NOTE_BYTES} bytes (UTF-8)")
    return note


def checked_author(by: object) -> str:
    """The writer's key label, as recorded in `updated_by` and the history."""
    if not isinstance(by, str) or not by.strip() or len(by) > MAX_AUTHOR_CHARS:
        raise InvalidAnnotation(f"the writer's label must have 1 to {MAX_AUTHOR_CHARS} characters")
    return by


def checked_order(begin_at: datetime | None, end_at: datetime | None) -> None:
    """Refuse bounds where the effective begin is not before the effective end."""
    if begin_at is not None and end_at is not None and begin_at >= end_at:
        raise InvalidAnnotation(
            f"begin_at ({begin_at.isoformat()}) must be before end_at ({end_at.isoformat()})"
        )
