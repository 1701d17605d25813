"""Parsing of user-given times, ranges, widths and offsets (no database)."""

from datetime import UTC, date, datetime, timedelta, timezone

import pandas as pd
import pytest

from tagflow.errors import InvalidTimeRange
from tagflow.time_range import (
    TimeRange,
    format_duration,
    parse_duration,
    parse_instant,
    parse_time_range,
    parse_width,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_aware_datetimes_iso_strings_and_timestamps_give_the_same_range():
    expected = TimeRange(T0, T0 + timedelta(days=1))
    assert parse_time_range((T0, T0 + timedelta(days=1))) == expected
    assert parse_time_range(["2026-03-01T00:00:00Z", "2026-03-02T00:00:00+00:00"]) == expected
    assert parse_time_range((pd.Timestamp("2026-03-01", tz="UTC"), "2026-03-02T01:00+01:00")) == (
        expected
    )


def test_other_offsets_are_converted_to_utc():
    tokyo = timezone(timedelta(hours=9))
    assert parse_instant(datetime(2026, 3, 1, 9, tzinfo=tokyo)) == T0


def test_nanosecond_timestamps_round_up_to_the_next_microsecond():
    stamp = pd.Timestamp("2026-03-01T00:00:00.000001001", tz="UTC")
    assert parse_instant(stamp) == T0 + timedelta(microseconds=2)


@pytest.mark.parametrize(
    "bad",
    [
        datetime(2026, 3, 1),  # naive
        "2026-03-01T00:00:00",  # naive string
        pd.Timestamp("2026-03-01"),  # naive Timestamp
        date(2026, 3, 1),
        1772323200,
        "yesterday",
        "2026-03-01'; DROP TABLE tag_data; --",
        "9" * 500,
        None,
    ],
)
def test_naive_or_unparseable_instants_are_refused(bad):
    with pytest.raises(InvalidTimeRange):
        parse_instant(bad)


@pytest.mark.parametrize(
    "bad",
    [
        (T0, T0),  # empty
        (T0 + timedelta(hours=1), T0),  # reversed
        (T0,),
        T0,
        "2026-03-01/2026-03-02",
        (T0, T0 + timedelta(days=1), T0),
    ],
)
def test_empty_reversed_or_malformed_ranges_are_refused(bad):
    with pytest.raises(InvalidTimeRange):
        parse_time_range(bad)


def test_range_days_include_a_partial_last_day_but_not_an_exclusive_midnight():
    assert TimeRange(T0, T0 + timedelta(days=2)).days() == [date(2026, 3, 1), date(2026, 3, 2)]
    partial = TimeRange(T0 + timedelta(hours=23), T0 + timedelta(days=1, minutes=1))
    assert partial.days() == [date(2026, 3, 1), date(2026, 3, 2)]


def test_durations_parse_from_strings_and_timedeltas():
    assert parse_duration("15m") == timedelta(minutes=15)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("1d") == timedelta(days=1)
    assert parse_duration("-30m", "offset") == timedelta(minutes=-30)
    assert parse_duration(pd.Timedelta("90s")) == timedelta(seconds=90)
    assert parse_duration("250ms") == timedelta(milliseconds=250)


@pytest.mark.parametrize(
    "bad",
    [
        "0s",
        "-1h",
        timedelta(0),
        timedelta(hours=-1),
        "",
        "15",
        "1x",
        "1h; select 1",
        "1 h",
        15,
        None,
        timedelta(days=100_000),
    ],
)
def test_zero_negative_and_malformed_widths_are_refused(bad):
    with pytest.raises(InvalidTimeRange):
        parse_width(bad)


@pytest.mark.parametrize(
    "value", [timedelta(minutes=15), timedelta(microseconds=1500), timedelta(hours=-2)]
)
def test_format_duration_round_trips(value):
    assert parse_duration(format_duration(value)) == value
