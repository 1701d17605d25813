"""One query object per read: the client builds it from Python values, the HTTP transport sends
it as query-string or JSON parameters, the service's parameter models build the same object back
from them (tagflow.readapi.server.params), and the engine answers it. Validation that needs no
data happens here, once, for every door."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any, ClassVar
from urllib.parse import quote

from tagflow.errors import InvalidArgument, InvalidTimeRange
from tagflow.names import validate_tag_name
from tagflow.time_range import (
    ONE_US,
    TimeRange,
    format_duration,
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


@dataclass(frozen=True, kw_only=True)
class TagsQuery(Query):
    """Tags with a transition in the range (all tags without one)."""

    def path(self) -> str:
        return "/v1/tags"


@dataclass(frozen=True, kw_only=True)
class SpansQuery(Query):
    """Runs of one value of a tag, newest first, at most `limit`; hidden spans only with
    `include_hidden` (DESIGN §9)."""

    tag_name: str
    limit: int | None = None
    include_hidden: bool = False

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
        if self.include_hidden:
            out["include_hidden"] = "true"
        if self.method == "POST":
            out["tag_name"] = self.tag_name
        return out


@dataclass(frozen=True, kw_only=True)
class SpanAnnotationsQuery(Query):
    """The tenant's span annotations whose bounds meet the range (all without one); with
    `detached`, only those of computed spans no longer computed (DESIGN §9)."""

    detached: bool = False

    def path(self) -> str:
        return "/v1/annotations"

    def params(self) -> dict[str, Any]:
        out = super().params()
        if self.detached:
            out["detached"] = "true"
        return out


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
