"""Pandera schemas of every dataset: the invariants a stored partition must satisfy.

Each schema is built for one tenant-day partition (range and bucket-alignment checks need
the day); `validate_partition` runs it on an Arrow table and returns the failures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pandera.pandas as pa_pd
import pyarrow as pa

from tagflow.schemas.registry import Dataset, Kind
from tagflow.schemas.registry import dataset as registered

# twa, first and last may exceed [min, max] by float rounding of the time-weighted sum.
_REL_TOL = 1e-9

UTC_TS = pd.DatetimeTZDtype(unit="us", tz="UTC")


def _sorted_by(*keys: str):
    def check(df: pd.DataFrame) -> bool:
        if len(df) < 2:
            return True
        # Compare each row with the previous one lexicographically over `keys`.
        ordered = np.ones(len(df) - 1, dtype=bool)
        decided = np.zeros(len(df) - 1, dtype=bool)
        for key in keys:
            values = df[key].to_numpy()
            prev, cur = values[:-1], values[1:]
            less, greater = np.asarray(prev < cur, bool), np.asarray(prev > cur, bool)
            ordered &= decided | ~greater
            decided |= less | greater
        return bool(ordered.all())

    return pa_pd.Check(check, element_wise=False, error=f"rows not sorted by {', '.join(keys)}")


def _within(lower: str, value: str, upper: str) -> pa_pd.Check:
    def check(df: pd.DataFrame) -> pd.Series:
        lo, v, hi = df[lower], df[value], df[upper]
        slack = _REL_TOL * np.maximum(lo.abs(), hi.abs())
        return v.isna() | ((lo - slack <= v) & (v <= hi + slack))

    return pa_pd.Check(check, error=f"{value} outside [{lower}, {upper}]")


def _ts(nullable: bool = False, **checks) -> pa_pd.Column:
    return pa_pd.Column(UTC_TS, nullable=nullable, checks=list(checks.values()) or None)


def _in_day(day_start: datetime, day_end: datetime) -> pa_pd.Check:
    return pa_pd.Check(
        lambda s: (s >= day_start) & (s < day_end), error="time outside the partition's day"
    )


def tags_schema() -> pa_pd.DataFrameSchema:
    return pa_pd.DataFrameSchema(
        {
            "tag_id": pa_pd.Column("int32", unique=True),
            "tag_name": pa_pd.Column(str, unique=True),
            "birth_at": _ts(nullable=True),
            "death_at": _ts(nullable=True),
            "value_kind": pa_pd.Column(
                str, pa_pd.Check.isin(["numeric", "string", "mixed"]), nullable=True
            ),
        },
        checks=[_sorted_by("tag_name")],
        strict=True,
    )


def _value_columns() -> dict[str, pa_pd.Column]:
    return {
        "value_double": pa_pd.Column("float64", nullable=True),
        "value_string": pa_pd.Column(str, nullable=True),
    }


def _one_value_kind() -> pa_pd.Check:
    return pa_pd.Check(
        lambda df: ~(df["value_double"].notna() & df["value_string"].notna()),
        error="a row holds both a number and a string",
    )


def _kind_matches_value() -> pa_pd.Check:
    def check(df: pd.DataFrame) -> pd.Series:
        numeric = df["value_kind"] == "numeric"
        return (numeric & df["value_string"].isna()) | (~numeric & df["value_double"].isna())

    return pa_pd.Check(check, error="value column does not match value_kind")


def transitions_schema(day_start: datetime, day_end: datetime) -> pa_pd.DataFrameSchema:
    return pa_pd.DataFrameSchema(
        {
            "tag_id": pa_pd.Column("int32"),
            "tag_name": pa_pd.Column(str),
            "time": _ts(in_day=_in_day(day_start, day_end)),
            **_value_columns(),
            "value_kind": pa_pd.Column(str, pa_pd.Check.isin(["numeric", "string"])),
        },
        checks=[_sorted_by("tag_name", "time"), _kind_matches_value()],
        unique=["tag_id", "time"],
        strict=True,
    )


def carry_in_schema(day_start: datetime, day_end: datetime) -> pa_pd.DataFrameSchema:
    return pa_pd.DataFrameSchema(
        {
            "tag_id": pa_pd.Column("int32", unique=True),
            "tag_name": pa_pd.Column(str),
            "time": _ts(before=pa_pd.Check.lt(day_start)),
            **_value_columns(),
            "value_kind": pa_pd.Column(str, pa_pd.Check.isin(["numeric", "string"])),
            "run_begin_at": _ts(),
        },
        checks=[
            _sorted_by("tag_name"),
            _kind_matches_value(),
            pa_pd.Check(lambda df: df["run_begin_at"] <= df["time"], error="run begins after row"),
        ],
        strict=True,
    )


def spans_schema(day_start: datetime, day_end: datetime) -> pa_pd.DataFrameSchema:
    def ordered_times(df: pd.DataFrame) -> pd.Series:
        raw_end = df["raw_end_at"]
        return (
            (df["begin_at"] < df["end_at"])
            & (df["raw_begin_at"] <= df["begin_at"])
            & (raw_end.isna() | ((df["end_at"] == raw_end) & (raw_end < day_end)))
            & (df["begin_at"] >= day_start)
            & (df["end_at"] <= day_end)
        )

    return pa_pd.DataFrameSchema(
        {
            "id": pa_pd.Column("int64", unique=True),
            "tag_id": pa_pd.Column("int32"),
            "tag_name": pa_pd.Column(str),
            **_value_columns(),
            "raw_begin_at": _ts(),
            "raw_end_at": _ts(nullable=True),
            "begin_at": _ts(),
            "end_at": _ts(),
        },
        checks=[
            _sorted_by("tag_name", "raw_begin_at"),
            _one_value_kind(),
            pa_pd.Check(
                ordered_times,
                error="need raw_begin_at <= begin_at < end_at within the day, "
                "end_at = raw_end_at when set",
            ),
        ],
        unique=["tag_id", "raw_begin_at"],
        strict=True,
    )


def _bucket_columns(day_start: datetime, day_end: datetime, width: timedelta) -> dict:
    width_us = width // timedelta(microseconds=1)
    aligned = pa_pd.Check(
        lambda s: (s.astype("int64") % width_us) == 0, error=f"bucket_start not aligned to {width}"
    )
    return {
        "tag_id": pa_pd.Column("int32"),
        "tag_name": pa_pd.Column(str),
        "bucket_start": _ts(in_day=_in_day(day_start, day_end), aligned=aligned),
        "covered_s": pa_pd.Column("float64", pa_pd.Check.in_range(0.0, width.total_seconds())),
        "count": pa_pd.Column("int64", pa_pd.Check.ge(0)),
    }


def _null_iff_uncovered(columns: list[str]) -> pa_pd.Check:
    def check(df: pd.DataFrame) -> pd.Series:
        covered = df["covered_s"] > 0
        ok = pd.Series(True, index=df.index)
        for column in columns:
            ok &= df[column].notna() == covered
        return ok

    return pa_pd.Check(
        check, error=f"{', '.join(columns)} must be null exactly where covered_s = 0"
    )


def samples_schema(day_start: datetime, day_end: datetime, width: timedelta):
    value_columns = ["twa", "min", "max", "first", "last"]
    return pa_pd.DataFrameSchema(
        {
            **_bucket_columns(day_start, day_end, width),
            **{c: pa_pd.Column("float64", nullable=True) for c in value_columns},
        },
        checks=[
            _sorted_by("tag_name", "bucket_start"),
            _null_iff_uncovered(value_columns),
            _within("min", "twa", "max"),
            _within("min", "first", "max"),
            _within("min", "last", "max"),
        ],
        unique=["tag_id", "bucket_start"],
        strict="filter",
    )


def samples_str_schema(day_start: datetime, day_end: datetime, width: timedelta):
    return pa_pd.DataFrameSchema(
        {
            **_bucket_columns(day_start, day_end, width),
            **{c: pa_pd.Column(str, nullable=True) for c in ["first", "last", "mode"]},
        },
        checks=[
            _sorted_by("tag_name", "bucket_start"),
            _null_iff_uncovered(["first", "last", "mode"]),
        ],
        unique=["tag_id", "bucket_start"],
        # held_s (a map) is checked against the Arrow schema, not by pandera.
        strict="filter",
    )


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    failures: int
    summary: str


def _schema_for(dataset: Dataset, day_start: datetime, day_end: datetime) -> pa_pd.DataFrameSchema:
    match dataset.kind:
        case Kind.TAGS:
            return tags_schema()
        case Kind.TRANSITIONS:
            return transitions_schema(day_start, day_end)
        case Kind.CARRY_IN:
            return carry_in_schema(day_start, day_end)
        case Kind.SPANS:
            return spans_schema(day_start, day_end)
        case Kind.SAMPLES_STR:
            return samples_str_schema(day_start, day_end, dataset.width)
        case Kind.SAMPLES:
            return samples_schema(day_start, day_end, dataset.width)


def validate_partition(
    dataset: str, table: pa.Table, day_start: datetime, day_end: datetime
) -> CheckOutcome:
    """Check one partition against its Arrow schema and its pandera schema."""
    entry = registered(dataset)
    expected = entry.schema
    if not table.schema.equals(expected, check_metadata=False):
        return CheckOutcome(False, 1, f"Arrow schema differs from {dataset}'s: {table.schema}")
    frame = table.drop_columns(["held_s"]) if "held_s" in table.column_names else table
    df = frame.to_pandas(types_mapper={pa.string(): None}.get, coerce_temporal_nanoseconds=False)
    try:
        _schema_for(entry, day_start, day_end).validate(df, lazy=True)
    except pa_pd.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        # One line per failed check; the failing values themselves stay out of the UI/logs.
        counts = cases.groupby("check", dropna=False).size()
        summary = "; ".join(f"{check} ({n} cases)" for check, n in counts.items())[:2000]
        return CheckOutcome(False, len(cases), summary)
    return CheckOutcome(True, 0, f"{table.num_rows} rows satisfy the {dataset} schema")
