"""The read calls' parameters, declared once: one pydantic model per call is the query string of
its GET form, the JSON body of its POST form and what OpenAPI shows of both, and builds the
call's query object (tagflow.readapi.query), which checks every value.

Fields hold the text the parameters arrive as (a JSON body's true/false read as 'true'/'false'),
so pydantic refuses nothing on its own: a wrong value is answered with the query's typed error,
never with a validation error that echoes the input.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from tagflow.errors import InvalidAnnotation, InvalidArgument, TagflowError
from tagflow.readapi import query as q
from tagflow.readapi.annotation_wire import COMPUTED
from tagflow.readapi.wire import ARROW_STREAM, FORMATS
from tagflow.time_range import TimeRange, parse_duration, parse_time_range, parse_width


class _Params(BaseModel):
    """A call's parameters, each checked by the call's own rules."""

    @classmethod
    def of_body(cls, body: dict[str, Any]) -> Self:
        """The parameters of a JSON body, refused with the call's own typed error."""
        try:
            return cls.model_validate(body)
        except ValidationError as invalid:
            raise _cause(invalid) from None


class ReadParams(_Params):
    """What every read takes: the range, the source fallback and the answer's format."""

    model_config = ConfigDict(frozen=True)

    start: str | None = Field(None, description="Range start, ISO 8601 with offset.")
    end: str | None = Field(None, description="Range end (exclusive), ISO 8601.")
    allow_source: str | None = Field(None, description="false: refuse days not materialised.")
    format: str | None = Field(
        None,
        description="'json' (default), 'arrow' (an Arrow IPC stream) or 'columns' (JSON, one "
        'array per column: {"columns": [names], "data": [[values], ...]}).',
    )

    @field_validator("*", mode="before")
    @classmethod
    def _as_text(cls, value: Any, info: ValidationInfo) -> Any:
        """A string parameter as text (JSON booleans read as 'true'/'false'); anything else
        is refused. `tag` and `tag_name` check themselves."""
        if info.field_name in ("tag", "tag_name"):
            return value
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        raise InvalidArgument(f"{info.field_name} must be a string")

    def answer_format(self, accept: str) -> str:
        """One of wire.FORMATS: `format`, else 'arrow' if the Accept header asks for it."""
        if self.format is not None:
            if self.format not in FORMATS:
                raise InvalidArgument("format must be 'json', 'arrow' or 'columns'")
            return self.format
        return "arrow" if ARROW_STREAM in accept else "json"

    def time_range(self) -> TimeRange | None:
        if (self.start is None) != (self.end is None):
            raise InvalidArgument("give both start and end, or neither")
        return None if self.start is None else parse_time_range((self.start, self.end))

    def source_allowed(self) -> bool:
        return _flag(self.allow_source, "allow_source", default=True)

    def query(self) -> q.Query:
        return q.TagsQuery(time_range=self.time_range(), allow_source=self.source_allowed())


class SpansParams(ReadParams):
    """The spans call; the tag's name is the path's (GET)."""

    limit: str | None = Field(None, description="At most this many spans, newest first.")
    include_hidden: str | None = Field(
        None, description="true: also the spans people hid (metadata.hidden)."
    )

    def spans_query(self, tag_name: str) -> q.SpansQuery:
        limit = None
        if self.limit is not None:
            raw = self.limit
            # isascii: str.isdigit() also accepts '²' and other digits int() refuses.
            if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or int(raw) < 1:
                raise InvalidArgument("limit must be a positive integer")
            limit = int(raw)
        return q.SpansQuery(
            tag_name=tag_name,
            limit=limit,
            include_hidden=_flag(self.include_hidden, "include_hidden", default=False),
            time_range=self.time_range(),
            allow_source=self.source_allowed(),
        )


class SpansBody(SpansParams):
    """The spans call with the tag's name in the body (POST), for a name too long for a URL."""

    tag_name: str | None = Field(
        None, description="The tag's name, any length up to the service's body limit."
    )

    @field_validator("tag_name", mode="before")
    @classmethod
    def _one_name(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        raise InvalidArgument("tag_name must be a string: the name of one tag")

    def query(self) -> q.SpansQuery:
        if not isinstance(self.tag_name, str):
            raise InvalidArgument("tag_name must be a string: the name of one tag")
        return self.spans_query(self.tag_name)


class SpanAnnotationsParams(ReadParams):
    """The span annotations call: the tenant's annotations whose bounds meet the range."""

    detached: str | None = Field(
        None, description="true: only those of computed spans no longer computed (detached)."
    )

    def query(self) -> q.SpanAnnotationsQuery:
        return q.SpanAnnotationsQuery(
            detached=_flag(self.detached, "detached", default=False),
            time_range=self.time_range(),
            allow_source=self.source_allowed(),
        )


class MetricDataParams(ReadParams):
    """The transitions call; `tag` repeated in a query string, a list in a body."""

    tag: list[str] | None = Field(
        None, description="Tag names (repeat the parameter in a query string); all when absent."
    )

    @field_validator("tag", mode="before")
    @classmethod
    def _tag_list(cls, value: Any) -> Any:
        if value is None or isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise InvalidArgument("tag must be a list of tag names")

    def tag_names(self) -> tuple[str, ...] | None:
        return q.tag_list(self.tag)

    def query(self) -> q.Query:
        return q.MetricDataQuery(
            tag_names=self.tag_names(),
            time_range=self.time_range(),
            allow_source=self.source_allowed(),
        )


class CounterRateParams(MetricDataParams):
    """A counter's increase per second in each bucket."""

    sampling: ClassVar[q.Sampling] = q.Sampling.COUNTER_RATE

    bucket_width: str | None = Field(None, description="Bucket width, e.g. 15m, 1h, 90s, 1d.")
    bucket_offset: str | None = Field(None, description="Bucket alignment offset, e.g. 30m.")

    def options(self) -> dict[str, str]:
        """The fields only some samplings take."""
        return {}

    def query(self) -> q.BucketQuery:
        # Order of the checks as the client meets them: options, tags, width, offset, range.
        options = self.options()
        tag_names = self.tag_names()
        return q.BucketQuery(
            sampling=self.sampling,
            tag_names=tag_names,
            width=parse_width(self.bucket_width or ""),
            offset=parse_duration(self.bucket_offset or "0s", "bucket offset"),
            time_range=self.time_range(),
            allow_source=self.source_allowed(),
            **options,
        )


class DerivativeParams(CounterRateParams):
    """The per-second change of one sampled aggregate between consecutive buckets."""

    sampling: ClassVar[q.Sampling] = q.Sampling.DERIVATIVE

    aggregate_function: str | None = Field(
        None, description=f"One of {', '.join(q.AGGREGATES)} (average is time-weighted)."
    )

    def options(self) -> dict[str, str]:
        return {"aggregate": self.aggregate_function or "average"}


class SamplesParams(DerivativeParams):
    """LOCF samples of one aggregate per bucket."""

    sampling: ClassVar[q.Sampling] = q.Sampling.SAMPLES

    bucket_function: str | None = Field(
        None, description=f"One of {', '.join(q.BUCKET_FUNCTIONS)}."
    )

    def options(self) -> dict[str, str]:
        return {**super().options(), "bucket_function": self.bucket_function or "locf"}


# The bucketed calls by their path's last part (/v1/metrics/{sampling}).
BUCKET_PARAMS: dict[q.Sampling, type[CounterRateParams]] = {
    model.sampling: model for model in (SamplesParams, DerivativeParams, CounterRateParams)
}


def _flag(value: str | None, name: str, *, default: bool) -> bool:
    """A true/false parameter (absent: `default`)."""
    if value is None:
        return default
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise InvalidArgument(f"{name} must be true or false")


def _cause(invalid: ValidationError) -> TagflowError:
    """The typed error a field's check raised (pydantic wraps it); else which field is wrong."""
    for error in invalid.errors():
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, TagflowError):
            return cause
    names = sorted({str(error["loc"][-1]) for error in invalid.errors() if error["loc"]})
    return InvalidArgument(f"invalid parameter(s): {names}")


# ---------------------------------------------------------------------- span annotation writes


def _aware_time(name: str, value: Any) -> datetime:
    """An ISO 8601 time with its offset; a naive one is refused (whose clock would it be?)."""
    if not isinstance(value, str):
        raise InvalidAnnotation(f"{name} must be an ISO 8601 time with an offset")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidAnnotation(f"{name} must be an ISO 8601 time with an offset") from None
    if moment.utcoffset() is None:
        raise InvalidAnnotation(f"{name} must carry an offset (e.g. Z or +00:00); it is naive")
    return moment


class WriteBody(_Params):
    """A span annotation write's JSON body: every field is checked by the call's own rules (a
    typed error naming the field, never a validation error that echoes the input)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("labels", mode="before", check_fields=False)
    @classmethod
    def _labels(cls, value: Any) -> Any:
        # The limits (count, sizes) are the state layer's; the shape is checked here.
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise InvalidAnnotation("labels must be a JSON object of strings to strings")
        return value

    @field_validator("revision", mode="before", check_fields=False)
    @classmethod
    def _revision(cls, value: Any) -> Any:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidAnnotation("revision must be a whole number, 0 or more")
        return value

    @field_validator("note", "tag_name", mode="before", check_fields=False)
    @classmethod
    def _text(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            raise InvalidAnnotation(f"{info.field_name} must be a string")
        return value


class SpanUpdateBody(WriteBody):
    """PATCH /v1/annotations/spans/{span_id}: the revision the change starts from and the
    fields to change; a field left out stays as it is. `begin_at` / `end_at` null drops the
    correction (back to the computed bound). A computed span's first annotation names the span
    as get_spans answered it: `tag_name` and `raw_begin_at`."""

    revision: int = Field(description="The span's revision this change starts from (0: never).")
    tag_name: str | None = Field(None, description="First annotation: the span's tag.")
    raw_begin_at: datetime | None = Field(
        None, description="First annotation: the span's raw_begin_at, ISO 8601 with offset."
    )
    labels: dict[str, str] | None = Field(None, description="Replaces the whole label map.")
    note: str | None = Field(None, description="Free text.")
    begin_at: datetime | None = Field(
        None, description="Corrected begin, ISO 8601 with offset; null: the computed begin."
    )
    end_at: datetime | None = Field(
        None, description="Corrected end, ISO 8601 with offset; null: the computed end."
    )
    hidden: bool | None = Field(None, description="Leave the span out of answers (or not).")

    @field_validator("hidden", mode="before")
    @classmethod
    def _hidden(cls, value: Any) -> Any:
        if not isinstance(value, bool):
            raise InvalidAnnotation("hidden must be true or false")
        return value

    @field_validator("raw_begin_at", "begin_at", "end_at", mode="before")
    @classmethod
    def _times(cls, value: Any, info: ValidationInfo) -> Any:
        # null for a bound means "the computed bound": it reaches here only as None.
        return None if value is None else _aware_time(str(info.field_name), value)

    def changes(self) -> dict[str, Any]:
        """The update's keyword arguments: only the fields the body gave; a bound given as
        null is COMPUTED. null for labels, note or hidden is refused (give {} or "")."""
        given = self.model_fields_set
        for name in ("labels", "note", "hidden"):
            if name in given and getattr(self, name) is None:
                raise InvalidAnnotation(f"{name} cannot be null; leave it out to keep it")
        changes: dict[str, Any] = {
            name: getattr(self, name)
            for name in ("labels", "note", "hidden", "begin_at", "end_at")
            if name in given
        }
        for bound in ("begin_at", "end_at"):
            if bound in changes and changes[bound] is None:
                changes[bound] = COMPUTED
        return changes


class SpanCreateBody(WriteBody):
    """POST /v1/annotations/spans: a span of a person's own on one of the tenant's tags."""

    tag_name: str = Field(description="The tag the span is on.")
    begin_at: datetime = Field(description="ISO 8601 with offset.")
    end_at: datetime = Field(description="ISO 8601 with offset, after begin_at.")
    labels: dict[str, str] | None = Field(None, description="String to string map.")
    note: str | None = Field(None, description="Free text.")

    @field_validator("begin_at", "end_at", mode="before")
    @classmethod
    def _times(cls, value: Any, info: ValidationInfo) -> Any:
        return _aware_time(str(info.field_name), value)


class SpanMoveBody(WriteBody):
    """POST /v1/annotations/spans/{span_id}/move: move the span's annotation (a detached one,
    typically) onto a computed span nobody annotated, named as get_spans answered it
    (`to_span_id`, `to_tag_name`, `to_raw_begin_at`), or without them onto a new span of the
    person's own over `begin_at` / `end_at` (left out: the bounds the annotation covers)."""

    revision: int = Field(description="The moved span's revision this change starts from.")
    to_span_id: int | None = Field(None, description="The computed span to carry it.")
    to_tag_name: str | None = Field(None, description="That span's tag.")
    to_raw_begin_at: datetime | None = Field(
        None, description="That span's raw_begin_at, ISO 8601 with offset."
    )
    begin_at: datetime | None = Field(None, description="A new span's begin, ISO 8601.")
    end_at: datetime | None = Field(None, description="A new span's end, ISO 8601.")

    @field_validator("to_span_id", mode="before")
    @classmethod
    def _span_id(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise InvalidAnnotation("to_span_id must be a whole number")
        return value

    @field_validator("to_tag_name", mode="before")
    @classmethod
    def _tag(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise InvalidAnnotation("to_tag_name must be a string")
        return value

    @field_validator("to_raw_begin_at", "begin_at", "end_at", mode="before")
    @classmethod
    def _times(cls, value: Any, info: ValidationInfo) -> Any:
        return None if value is None else _aware_time(str(info.field_name), value)
