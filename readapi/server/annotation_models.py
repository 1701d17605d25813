"""The answers of the span annotation routes as OpenAPI documents them (/docs): the span a write
answers with, a history's changes, the 409 of a stale revision, the access answer and the error
body. Documentation only: the routes write their JSON themselves (tagflow.readapi.annotation_wire),
so an answer costs no second validation; tests check the two agree."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class SpanMetadata(BaseModel):
    """A span's annotation, as every spans answer merges it."""

    labels: dict[str, str] = Field(description="String to string map.")
    note: str = Field(description="Free text.")
    revision: int = Field(description="0 before the first change, +1 per change.")
    hidden: bool = Field(description="Left out of answers unless include_hidden.")
    origin: Literal["computed", "user"] = Field(description="Computed, or a person's own span.")
    updated_at: datetime | None = Field(description="Server time of the last change.")
    updated_by: str | None = Field(description="The writing key's label.")
    computed_begin_at: datetime | None = Field(
        None, description="Present where begin_at was corrected: the computed begin."
    )
    computed_end_at: datetime | None = Field(
        None, description="Present where end_at was corrected: the computed end (null: open)."
    )


class SpanAnswer(BaseModel):
    """A span with its annotation: begin_at / end_at the corrected bounds where corrected,
    raw_begin_at / raw_end_at the computed run's (a person's span: its own)."""

    id: int
    tag_name: str
    value_double: float | Literal["NaN", "Infinity", "-Infinity"] | None = Field(
        description="A numeric value (non-finite ones as strings); null for a person's span."
    )
    value_string: str | None = Field(description="A string value.")
    begin_at: datetime
    end_at: datetime
    raw_begin_at: datetime
    raw_end_at: datetime | None = Field(description="null while the run has not ended.")
    metadata: SpanMetadata | None


class SpanChangeAnswer(BaseModel):
    """One change of a span's annotation."""

    revision: int = Field(description="The revision the change made.")
    before: dict[str, Any] | None = Field(description="null for the change that created it.")
    after: dict[str, Any] = Field(
        description="labels, note, begin_at, end_at, hidden, moved_to after the change."
    )
    by: str = Field(description="The writing key's label.")
    at: datetime = Field(description="Server time.")


class AccessAnswer(BaseModel):
    """What a key may do with annotations."""

    write: bool = Field(description="Whether the key was added with --write.")


class ErrorAnswer(BaseModel):
    """Every error: a stable code and a one-line message."""

    error: str = Field(description="e.g. invalid_annotation, unknown_span, permission_denied.")
    message: str


class ConflictAnswer(ErrorAnswer):
    """409: the revision was stale; nothing was written. Start again from `current`."""

    current: SpanAnswer


# The error answers every write route may give, as OpenAPI names them.
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorAnswer, "description": "A value breaks a rule (invalid_annotation)."},
    401: {"model": ErrorAnswer, "description": "No valid key."},
    403: {"model": ErrorAnswer, "description": "A read key writing (permission_denied)."},
    404: {"model": ErrorAnswer, "description": "Unknown span or tag (of this tenant)."},
    409: {"model": ConflictAnswer, "description": "Stale revision: the current span."},
    413: {"model": ErrorAnswer, "description": "Body over TAGFLOW_MAX_BODY_BYTES."},
    503: {"model": ErrorAnswer, "description": "The state database is unavailable."},
}
