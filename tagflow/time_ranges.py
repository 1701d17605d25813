"""UTC day bounds and validation of time ranges given by users."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

ONE_DAY = timedelta(days=1)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a UTC day as aware datetimes."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + ONE_DAY
