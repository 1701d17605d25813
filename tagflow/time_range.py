"""Times as tagflow takes them: UTC day bounds, and what users pass as instants, [start, end)
ranges, bucket widths and offsets. Everything becomes aware UTC datetimes / timedeltas at
microsecond precision, or an InvalidTimeRange that says what to pass instead."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from tagflow.errors import InvalidTimeRange

ONE_US = timedelta(microseconds=1)
ONE_DAY = timedelta(days=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Bounds keep bucket arithmetic in int64 microseconds far from overflow and refuse typos
# like year 20226; the datasets start in 2020 anyway.
EARLIEST = EPOCH
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
MAX_WIDTH = timedelta(days=3660)
_MAX_TEXT = 64

_DURATION_PART = re.compile(r"(\d+)(d|h|ms|us|m|s)")
_DURATION_UNITS = {
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
    "ms": timedelta(milliseconds=1),
    "us": ONE_US,
}


@dataclass(frozen=True)
class TimeRange:
    """A half-open UTC interval [start, end) of aware datetimes with start < end."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for bound in (self.start, self.end):
            if not isinstance(bound, datetime) or bound.utcoffset() is None:
                raise InvalidTimeRange("time range bounds must be timezone-aware datetimes")
        if self.end <= self.start:
            raise InvalidTimeRange(
                f"time range end {self.end.isoformat()} must be after its start "
                f"{self.start.isoformat()} (the end is exclusive)"
            )

    def days(self) -> list[date]:
        """The UTC days that the range touches, in order."""
        first = self.start.date()
        last = (self.end - ONE_US).date()
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]

    def as_strings(self) -> tuple[str, str]:
        return self.start.isoformat(), self.end.isoformat()


def _ceil_to_us(value: datetime) -> datetime:
    """pandas Timestamps may carry nanoseconds; [start, end) on µs data is unchanged by
    rounding both bounds up (t >= s ⇔ t >= ceil(s) for µs t), so rounding up is exact."""
    nanos = getattr(value, "nanosecond", 0)
    if nanos:
        # a pandas Timestamp (only it has nanoseconds), which the datetime stub cannot know
        value = value.to_pydatetime(warn=False) + ONE_US  # type: ignore[attr-defined]  # see above
    elif hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    return value


def parse_instant(value: object, what: str = "time") -> datetime:
    """An aware datetime, pandas Timestamp or ISO 8601 string with an offset → aware UTC
    datetime. Naive values are refused: guessing a time zone silently shifts answers."""
    if isinstance(value, str):
        text = value.strip()
        if len(text) > _MAX_TEXT:
            raise InvalidTimeRange(f"{what} is too long to be an ISO 8601 time")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidTimeRange(
                f"{what} {text[:40]!r} is not an ISO 8601 time; use e.g. "
                "'2026-03-01T00:00:00+00:00'"
            ) from None
        value = parsed
    if not isinstance(value, datetime):
        raise InvalidTimeRange(
            f"{what} must be a timezone-aware datetime, pandas Timestamp or ISO 8601 string, "
            f"got {type(value).__name__}"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidTimeRange(
            f"{what} {value.isoformat()} has no time zone; pass an aware time such as "
            "datetime(..., tzinfo=timezone.utc) or '...+00:00'"
        )
    try:
        instant = _ceil_to_us(value).astimezone(UTC)
    except OverflowError:
        # Year 1 or 9999 shifted by its offset leaves the datetime range altogether.
        raise InvalidTimeRange(f"{what} is outside 1970-01-01 .. 9000-01-01") from None
    if not EARLIEST <= instant < LATEST:
        raise InvalidTimeRange(f"{what} {instant.isoformat()} is outside 1970-01-01 .. 9000-01-01")
    return instant


def parse_time_range(value: object) -> TimeRange:
    """A (start, end) pair (tuple or list) or a TimeRange → TimeRange; end is exclusive."""
    if isinstance(value, TimeRange):
        return value
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise InvalidTimeRange("a time range is a (start, end) pair; the end is exclusive")
    return TimeRange(parse_instant(value[0], "start"), parse_instant(value[1], "end"))


def parse_duration(value: object, what: str = "bucket width") -> timedelta:
    """A timedelta, pandas Timedelta or compact string ('15m', '1h30m', '90s', '250ms',
    '1d'; '-' allowed in front) → timedelta of whole microseconds."""
    if isinstance(value, str):
        text = value.strip().lower()
        sign = -1 if text.startswith("-") else 1
        body = text[1:] if text.startswith(("+", "-")) else text
        parts = _DURATION_PART.findall(body)
        if not body or len(body) > _MAX_TEXT or "".join(n + u for n, u in parts) != body:
            raise InvalidTimeRange(
                f"{what} {value[:40]!r} is not a duration; use a timedelta or a string "
                "like '15m', '1h', '1h30m', '90s', '1d'"
            )
        try:
            value = sign * sum((int(n) * _DURATION_UNITS[u] for n, u in parts), timedelta(0))
        except OverflowError:
            raise InvalidTimeRange(f"{what} must be at most {MAX_WIDTH.days} days") from None
    if not isinstance(value, timedelta):
        raise InvalidTimeRange(f"{what} must be a timedelta or a string like '15m'")
    if getattr(value, "nanoseconds", 0):
        raise InvalidTimeRange(f"{what} must be a whole number of microseconds")
    width: timedelta = value
    if hasattr(value, "to_pytimedelta"):
        width = value.to_pytimedelta()
    if abs(width) > MAX_WIDTH:
        raise InvalidTimeRange(f"{what} must be at most {MAX_WIDTH.days} days")
    return width


def parse_width(value: object) -> timedelta:
    """A positive bucket width."""
    width = parse_duration(value, "bucket width")
    if width <= timedelta(0):
        raise InvalidTimeRange(f"bucket width must be positive, got {format_duration(width)}")
    return width


def format_duration(value: timedelta) -> str:
    """The exact compact form parse_duration reads back ('-90s' style, in microseconds when
    not whole seconds), used on the wire between client and service."""
    total = value // ONE_US
    sign = "-" if total < 0 else ""
    total = abs(total)
    if total % 1_000_000 == 0:
        return f"{sign}{total // 1_000_000}s"
    return f"{sign}{total}us"


def to_us(value: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime."""
    return (value - EPOCH) // ONE_US


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a UTC day as aware datetimes."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + ONE_DAY
