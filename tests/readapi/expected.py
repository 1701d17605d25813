"""What the client should answer, derived from the brute-force reference (whole source
history, plain Python), in the client's shapes, plus comparisons that treat NaN as a value."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pandas as pd

from tagflow.readapi import Client
from tagflow.readapi.models import Span
from tagflow.readapi.query import AGGREGATES
from tagflow.transforms.columns import datetime_to_us
from tests.transforms.reference import Reference

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us(value: datetime) -> int:
    return datetime_to_us(value, "time")


def at(value_us: int | None) -> datetime | None:
    return None if value_us is None else EPOCH + timedelta(microseconds=value_us)


def expected_spans(ref: Reference, tag_name: str, start: datetime, end: datetime) -> list[Span]:
    rows = [r for r in ref.spans(us(start), us(end)) if r["tag_name"] == tag_name]
    rows.sort(key=lambda r: r["raw_begin_at"], reverse=True)
    return [
        Span(
            id=r["id"],
            tag_name=tag_name,
            value=r["value_string"] if r["value_string"] is not None else r["value_double"],
            begin_at=at(r["begin_at"]),
            end_at=at(r["end_at"]),
            raw_begin_at=at(r["raw_begin_at"]),
            raw_end_at=at(r["raw_end_at"]),
        )
        for r in rows
    ]


def expected_transitions(ref: Reference, start: datetime, end: datetime) -> list[tuple]:
    """(tag_name, time µs, value) of every kept row in [start, end), sorted."""
    rows, _ = ref.transitions(us(start), us(end))
    out = []
    for r in rows:
        value = r["value_string"] if r["value_kind"] == "string" else r["value_double"]
        out.append((r["tag_name"], r["time"], value))
    return sorted(out, key=lambda r: (r[1], r[0]))


def active_tag_names(ref: Reference, start: datetime, end: datetime) -> list[str]:
    lo, hi = us(start), us(end)
    names = {
        ref.tags[tag_id].name
        for tag_id, history in ref.history.items()
        if any(lo <= tr.time_us < hi for tr in history)
    }
    return sorted(names)


def expected_wide(
    ref: Reference,
    start: datetime,
    end: datetime,
    width: timedelta,
    offset: timedelta,
    aggregate: str,
    kinds: dict[str, str | None],
) -> dict[str, dict[int, object]]:
    """tag_name → {bucket_start µs: value} of the buckets the reference emits (the client
    fills the other buckets of its grid with NaN/None, count with 0)."""
    step = width // timedelta(microseconds=1)
    numeric, string = ref.samples(us(start), us(end), step, offset // timedelta(microseconds=1))
    field = AGGREGATES[aggregate]
    out: dict[str, dict[int, object]] = {name: {} for name in kinds}
    for rows, is_string_rows in ((numeric, False), (string, True)):
        for row in rows:
            name = row["tag_name"]
            tag_is_string = kinds[name] == "string"
            cell = out[name]
            if aggregate == "count":
                cell[row["bucket_start"]] = max(cell.get(row["bucket_start"], 0), row["count"])
            elif is_string_rows == tag_is_string and not (
                tag_is_string and aggregate in ("average", "min", "max")
            ):
                cell[row["bucket_start"]] = row[field]
    return out


def assert_wide_equals(
    frame: pd.DataFrame, expected: dict[str, dict[int, object]], aggregate: str
) -> None:
    times = [us(t.to_pydatetime()) for t in frame["time"]]
    assert times == sorted(times)
    for name, cells in expected.items():
        column = frame[name].tolist()
        assert set(cells) <= set(times), name
        for bucket, value in zip(times, column, strict=True):
            want = cells.get(bucket, 0 if aggregate == "count" else None)
            assert same_value(value, want), (name, at(bucket), value, want)


def same_value(got: object, want: object) -> bool:
    if want is None:
        return got is None or (isinstance(got, float) and math.isnan(got))
    if isinstance(want, float):
        if math.isnan(want):
            return isinstance(got, float) and math.isnan(got)
        return isinstance(got, int | float) and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
    return got == want


def all_answers(client: Client, tag_names: list[str], time_range) -> dict:
    """Every call of the client over `time_range`, as comparable values."""
    return {
        "tags": client.get_tags(time_range),
        "spans": {name: client.get_spans(name, time_range) for name in tag_names},
        "spans arrow": {name: client.get_spans_arrow(name, time_range) for name in tag_names},
        "data": client.get_metric_arrow(None, time_range),
        "1h": client.sample_metric_data("1h", time_range=time_range),
        "15m": client.sample_metric_data("15m", aggregate_function="last", time_range=time_range),
        "1d count": client.sample_metric_data(
            "1d", aggregate_function="count", time_range=time_range
        ),
        "counter": client.counter_rate("1h", time_range=time_range),
    }


def assert_same_answers(got: dict, want: dict) -> None:
    assert got["tags"] == want["tags"]
    assert got["spans"] == want["spans"]
    assert got["spans arrow"].keys() == want["spans arrow"].keys()
    for name, table in got["spans arrow"].items():
        assert table.schema == want["spans arrow"][name].schema, name
        assert table.to_pandas().equals(want["spans arrow"][name].to_pandas()), name
    # pandas equality: NaN values (real NaN rows) compare equal, unlike Arrow's.
    assert got["data"].to_pandas().equals(want["data"].to_pandas())
    for key in ("1h", "15m", "1d count", "counter"):
        assert got[key].equals(want[key]), key
