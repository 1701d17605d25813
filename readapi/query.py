"""One query object per read: the client builds it from Python values, the HTTP transport sends
it as query-string or JSON parameters, the service parses those back into the same object, and
the engine answers it. Validation that needs no data happens here, once, for every door."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any, ClassVar, TypedDict
from urllib.parse import quote

from tagflow.errors import InvalidArgument, InvalidTimeRange
from tagflow.names import validate_tag_name
from tagflow.time_range import (
    ONE_US,
    TimeRange,
    format_duration,
    parse_duration,
    parse_time_range,
    parse_width,
)

# aggregate_function → column of the samples datasets.
AGGREGATES = {
    "average": "twa",
    "min": "min",
    "max": "max",
    "first": "first",
    "last": "last",
    "count": "count",
}
# The aggregates a string tag has no value for.
NUMERIC_ONLY = frozenset({"average", "min", "max"})
BUCKET_FUNCTIONS = ("locf",)
# Buckets of one answer, a guard against answers too large to build (cells are the engine's
# AnswerLimits); checked before any data is read.
MAX_BUCKETS = 1_000_000
# The longest spans path a client sends as GET; a longer one (a long tag name, which
# percent-encoding can triple) goes as POST /v1/spans with the name in the JSON body, which the
# service bounds by TAGFLOW_MAX_BODY_BYTES instead of TAGFLOW_MAX_HEADER_BYTES.
MAX_SPANS_PATH_BYTES = 4096


class Sampling(StrEnum):
    """What a bucketed read returns per tag and bucket."""

    SAMPLES = "samples"
    DERIVATIVE = "derivative"
    COUNTER_RATE = "counter_rate"


def tag_list(tag_names: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """None (all tags), one name, or several names (duplicates dropped, order kept)."""
    if tag_names is None:
        return None
    if isinstance(tag_names, str):
        tag_names = [tag_names]
    try:
        names = list(tag_names)
    except TypeError:
        raise InvalidArgument("tag_names must be a tag name, a list of tag names or None") from None
    return tuple(dict.fromkeys(validate_tag_name(name) for name in names))


@dataclass(frozen=True, kw_only=True)
class Query:
    """What every read shares: the range (None: the reader's default) and whether days not
    materialised may be computed from the source."""

    time_range: TimeRange | None = None
    allow_source: bool = True

    # Wire form: GET (query string) or POST (JSON body, for tag lists too long for a URL).
    method: ClassVar[str] = "GET"

    def path(self) -> str:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The parameters on the wire (strings, and `tag` a list of names)."""
        out: dict[str, Any] = {}
        if self.time_range is not None:
            out["start"], out["end"] = self.time_range.as_strings()
        if not self.allow_source:
            out["allow_source"] = "false"
        return out

    @staticmethod
    def common(params: Mapping[str, Any]) -> dict[str, Any]:
        """The shared fields parsed from wire parameters."""
        start, end = text(params, "start"), text(params, "end")
        if (start is None) != (end is None):
            raise InvalidArgument("give both start and end, or neither")
        time_range = None if start is None else parse_time_range((start, end))
        return {"time_range": time_range, "allow_source": flag(params, "allow_source")}


@dataclass(frozen=True, kw_only=True)
class TagsQuery(Query):
    """Tags with a transition in the range (all tags without one)."""

    def path(self) -> str:
        return "/v1/tags"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TagsQuery:
        return cls(**cls.common(params))


@dataclass(frozen=True, kw_only=True)
class SpansQuery(Query):
    """Runs of one value of a tag, newest first, at most `limit`."""

    tag_name: str
    limit: int | None = None

    def __post_init__(self) -> None:
        validate_tag_name(self.tag_name)
        limit = self.limit
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise InvalidArgument("limit must be a positive integer or None")
        if limit is not None and limit < 1:
            raise InvalidArgument("limit must be a positive integer or None")

    @property
    def method(self) -> str:  # type: ignore[override]  # a property for Query's ClassVar
        """GET with the name in the path; POST with it in the body when the path would be
        longer than MAX_SPANS_PATH_BYTES (a URL must fit the service's header limit)."""
        return "GET" if len(self._name_path()) <= MAX_SPANS_PATH_BYTES else "POST"

    def path(self) -> str:
        return self._name_path() if self.method == "GET" else "/v1/spans"

    def _name_path(self) -> str:
        # Everything but letters, digits, '-', '_' and '~' is percent-encoded, dots included,
        # so no client library can normalise '..' away. The empty name is '/v1/spans/'.
        return "/v1/spans/" + quote(self.tag_name, safe="").replace(".", "%2E")

    def params(self) -> dict[str, Any]:
        out = super().params()
        if self.limit is not None:
            out["limit"] = str(self.limit)
        if self.method == "POST":
            out["tag_name"] = self.tag_name
        return out

    @classmethod
    def from_body(cls, params: Mapping[str, Any]) -> SpansQuery:
        """The POST form: the tag's name is the body's `tag_name`."""
        tag_name = params.get("tag_name")
        if not isinstance(tag_name, str):
            raise InvalidArgument("tag_name must be a string: the name of one tag")
        return cls.from_params(tag_name, params)

    @classmethod
    def from_params(cls, tag_name: str, params: Mapping[str, Any]) -> SpansQuery:
        raw = text(params, "limit")
        limit = None
        if raw is not None:
            # isascii: str.isdigit() also accepts '²' and other digits int() refuses.
            if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or int(raw) < 1:
                raise InvalidArgument("limit must be a positive integer")
            limit = int(raw)
        return cls(tag_name=tag_name, limit=limit, **cls.common(params))


@dataclass(frozen=True, kw_only=True)
class MetricDataQuery(Query):
    """Every transition of the tags (all if None) in the range, by time."""

    tag_names: tuple[str, ...] | None = None
    method: ClassVar[str] = "POST"

    def path(self) -> str:
        return "/v1/metrics/data"

    def params(self) -> dict[str, Any]:
        out = super().params()
        if self.tag_names is not None:
            out["tag"] = list(self.tag_names)
        return out

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> MetricDataQuery:
        return cls(tag_names=_tags(params), **cls.common(params))


class _BucketOptions(TypedDict, total=False):
    """The BucketQuery fields only some samplings take; absent ones keep their defaults."""

    aggregate: str
    bucket_function: str


@dataclass(frozen=True, kw_only=True)
class BucketQuery(Query):
    """Per tag and bucket [b, b+width) aligned to the epoch plus `offset`: samples (one
    aggregate), the derivative of one aggregate, or a counter's rate."""

    sampling: Sampling = Sampling.SAMPLES
    tag_names: tuple[str, ...] | None = None
    width: timedelta
    offset: timedelta = field(default=timedelta(0))
    aggregate: str = "average"
    bucket_function: str = "locf"
    method: ClassVar[str] = "POST"

    def __post_init__(self) -> None:
        width = self.width
        if not isinstance(width, timedelta) or width <= timedelta(0) or width % ONE_US:
            raise InvalidTimeRange("bucket width must be a positive whole number of microseconds")
        if self.time_range is not None:
            self.require_buckets_within(self.time_range)
        function = self.bucket_function
        if not isinstance(function, str) or function not in BUCKET_FUNCTIONS:
            raise InvalidArgument(
                f"unsupported bucket_function {str(function)[:40]!r}: only 'locf' (last "
                "observation carried forward, the step function) is supported"
            )
        aggregate = self.aggregate
        if not isinstance(aggregate, str) or aggregate not in AGGREGATES:
            raise InvalidArgument(
                f"unsupported aggregate_function {str(aggregate)[:40]!r}: use one of "
                + ", ".join(AGGREGATES)
            )
        if self.sampling == Sampling.DERIVATIVE and aggregate == "count":
            raise InvalidArgument("derivative needs a value aggregate, not 'count'")

    def require_buckets_within(self, time_range: TimeRange) -> None:
        """InvalidTimeRange if `time_range` holds more than MAX_BUCKETS buckets (checked here
        for a given range, by the reader for the default range it resolves)."""
        buckets = -(-(time_range.end - time_range.start) // self.width) + 1
        if buckets > MAX_BUCKETS:
            raise InvalidTimeRange(
                f"about {buckets} buckets is too large an answer (at most {MAX_BUCKETS}); "
                "use a wider bucket_width or a shorter range"
            )

    @property
    def offset_us(self) -> int:
        """The offset reduced into [0, width) in microseconds."""
        return (self.offset // ONE_US) % (self.width // ONE_US)

    def path(self) -> str:
        return f"/v1/metrics/{self.sampling.value}"

    def params(self) -> dict[str, Any]:
        out = super().params()
        out["bucket_width"] = format_duration(self.width)
        out["bucket_offset"] = format_duration(self.offset)
        if self.sampling != Sampling.COUNTER_RATE:
            out["aggregate_function"] = self.aggregate
        if self.sampling == Sampling.SAMPLES:
            out["bucket_function"] = self.bucket_function
        if self.tag_names is not None:
            out["tag"] = list(self.tag_names)
        return out

    @classmethod
    def from_params(cls, sampling: Sampling, params: Mapping[str, Any]) -> BucketQuery:
        """The call's own parameters; one a call does not take (a counter rate's aggregate)
        is ignored, as by the client."""
        options: _BucketOptions = {}
        if sampling != Sampling.COUNTER_RATE:
            options["aggregate"] = text(params, "aggregate_function") or "average"
        if sampling == Sampling.SAMPLES:
            options["bucket_function"] = text(params, "bucket_function") or "locf"
        return cls(
            sampling=sampling,
            tag_names=_tags(params),
            width=parse_width(text(params, "bucket_width") or ""),
            offset=parse_duration(text(params, "bucket_offset") or "0s", "bucket offset"),
            **options,
            **cls.common(params),
        )


def text(params: Mapping[str, Any], name: str) -> str | None:
    """A string parameter (JSON booleans read as 'true'/'false'); anything else is refused."""
    value = params.get(name)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    raise InvalidArgument(f"{name} must be a string")


def flag(params: Mapping[str, Any], name: str) -> bool:
    value = text(params, name)
    if value is None or value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise InvalidArgument(f"{name} must be true or false")


def _tags(params: Mapping[str, Any]) -> tuple[str, ...] | None:
    value = params.get("tag")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument("tag must be a list of tag names")
    return tag_list(value)
