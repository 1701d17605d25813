"""The audit of write–audit–publish: every chunk of every dataset is checked against its pandera
schema (the polars backend, on the chunk's Arrow columns without a copy) before it is written,
and the invariants that cross chunks are checked at the seams. A partition none of whose chunks
failed may be published; a failure names the dataset and carries pandera's failure cases.

Chunks hold disjoint sets of whole tags in tag-name order, so at a seam the sort order and the
uniqueness of (tag, time) reduce to: the new chunk's first tag name comes after the previous
chunk's last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandera.polars as pa_pl
import polars as pl
import pyarrow as pa

from tagflow.errors import TagflowError
from tagflow.schemas.registry import Dataset, Kind
from tagflow.schemas.registry import dataset as registered

# twa, first and last may exceed [min, max] by float rounding of the time-weighted sum.
_REL_TOL = 1e-9
UTC_US = pl.Datetime("us", "UTC")
# Failure cases kept for the step's metadata: enough to see the problem, not a dump.
_MAX_CASES = 20


class AuditFailed(TagflowError):
    """A chunk of a dataset broke its schema: nothing of the day is published."""

    def __init__(self, dataset: str, summary: str, cases: list[dict[str, Any]]) -> None:
        super().__init__(f"{dataset} failed its audit: {summary}")
        self.dataset = dataset
        self.summary = summary
        self.cases = cases


def _frame_check(expression: pl.Expr, error: str) -> pa_pl.Check:
    """A row-wise check written as one polars expression over the frame."""
    return pa_pl.Check(lambda data: data.lazyframe.select(expression), error=error)


def _sorted_by(*keys: str, strictly: bool = False) -> pa_pl.Check:
    """Rows in lexicographic order of `keys`; `strictly`: no two rows share all keys, which
    is uniqueness at the cost of one comparison per row (sorting already brings equal keys
    together)."""
    ordered, decided = pl.lit(True), pl.lit(False)
    for key in keys:
        previous, current = pl.col(key).shift(1), pl.col(key)
        ordered = ordered & (decided | ~(previous > current).fill_null(False))
        decided = decided | (previous != current).fill_null(False)
    if strictly:
        first_row = pl.int_range(pl.len()) == 0
        ordered = ordered & (decided | first_row)
    what = "strictly " if strictly else ""
    return _frame_check(ordered, f"rows not {what}sorted by {', '.join(keys)}")


def _one_id_per_name() -> pa_pl.Check:
    """tag_id and tag_name name the same tag on every row: a tag's rows share its id, and no
    two names share one (checked on the first row of each name)."""
    new_name = (pl.col("tag_name") != pl.col("tag_name").shift(1)).fill_null(True)
    same_id = new_name | (pl.col("tag_id") == pl.col("tag_id").shift(1))
    distinct_ids = pl.col("tag_id").filter(new_name).n_unique() == new_name.sum()
    return _frame_check(same_id & distinct_ids, "one tag_id per tag_name")


def _within(lower: str, value: str, upper: str) -> pa_pl.Check:
    lo, v, hi = pl.col(lower), pl.col(value), pl.col(upper)
    slack = _REL_TOL * pl.max_horizontal(lo.abs(), hi.abs())
    inside = v.is_null() | ((lo - slack <= v) & (v <= hi + slack))
    return _frame_check(inside.fill_null(False), f"{value} outside [{lower}, {upper}]")


def _ts(nullable: bool = False, checks: list[pa_pl.Check] | None = None) -> pa_pl.Column:
    return pa_pl.Column(UTC_US, nullable=nullable, checks=checks)


def _in_day(day_start: datetime, day_end: datetime) -> pa_pl.Check:
    return pa_pl.Check(
        lambda data: data.lazyframe.select(
            (pl.col(data.key) >= day_start) & (pl.col(data.key) < day_end)
        ),
        error="time outside the partition's day",
    )


def _value_columns() -> dict[str, pa_pl.Column]:
    return {
        "value_double": pa_pl.Column(pl.Float64, nullable=True),
        "value_string": pa_pl.Column(pl.String, nullable=True),
    }


def _kind_matches_value() -> pa_pl.Check:
    numeric = pl.col("value_kind") == "numeric"
    ok = (numeric & pl.col("value_string").is_null()) | (
        ~numeric & pl.col("value_double").is_null()
    )
    return _frame_check(ok, "value column does not match value_kind")


def tags_schema() -> pa_pl.DataFrameSchema:
    return pa_pl.DataFrameSchema(
        {
            "tag_id": pa_pl.Column(pl.Int32, unique=True),
            "tag_name": pa_pl.Column(pl.String, unique=True),
            "birth_at": _ts(nullable=True),
            "death_at": _ts(nullable=True),
            "value_kind": pa_pl.Column(
                pl.String, pa_pl.Check.isin(["numeric", "string", "mixed"]), nullable=True
            ),
        },
        checks=[_sorted_by("tag_name")],
        strict=True,
    )


def transitions_schema(day_start: datetime, day_end: datetime) -> pa_pl.DataFrameSchema:
    return pa_pl.DataFrameSchema(
        {
            "tag_id": pa_pl.Column(pl.Int32),
            "tag_name": pa_pl.Column(pl.String),
            "time": _ts(checks=[_in_day(day_start, day_end)]),
            **_value_columns(),
            "value_kind": pa_pl.Column(pl.String, pa_pl.Check.isin(["numeric", "string"])),
        },
        checks=[
            _sorted_by("tag_name", "time", strictly=True),
            _one_id_per_name(),
            _kind_matches_value(),
        ],
        strict=True,
    )


def carry_in_schema(day_start: datetime, day_end: datetime) -> pa_pl.DataFrameSchema:
    return pa_pl.DataFrameSchema(
        {
            "tag_id": pa_pl.Column(pl.Int32, unique=True),
            "tag_name": pa_pl.Column(pl.String),
            "time": _ts(checks=[pa_pl.Check.lt(day_start)]),
            **_value_columns(),
            "value_kind": pa_pl.Column(pl.String, pa_pl.Check.isin(["numeric", "string"])),
            "run_begin_at": _ts(),
        },
        checks=[
            _sorted_by("tag_name"),
            _kind_matches_value(),
            _frame_check(pl.col("run_begin_at") <= pl.col("time"), "run begins after row"),
        ],
        strict=True,
    )


def spans_schema(day_start: datetime, day_end: datetime) -> pa_pl.DataFrameSchema:
    raw_end = pl.col("raw_end_at")
    ordered_times = (
        (pl.col("begin_at") < pl.col("end_at"))
        & (pl.col("raw_begin_at") <= pl.col("begin_at"))
        & (raw_end.is_null() | ((pl.col("end_at") == raw_end) & (raw_end < day_end)))
        & (pl.col("begin_at") >= day_start)
        & (pl.col("end_at") <= day_end)
    )
    one_kind = ~(pl.col("value_double").is_not_null() & pl.col("value_string").is_not_null())
    return pa_pl.DataFrameSchema(
        {
            "id": pa_pl.Column(pl.Int64, unique=True),
            "tag_id": pa_pl.Column(pl.Int32),
            "tag_name": pa_pl.Column(pl.String),
            **_value_columns(),
            "raw_begin_at": _ts(),
            "raw_end_at": _ts(nullable=True),
            "begin_at": _ts(),
            "end_at": _ts(),
        },
        checks=[
            _sorted_by("tag_name", "raw_begin_at", strictly=True),
            _one_id_per_name(),
            _frame_check(one_kind, "a row holds both a number and a string"),
            _frame_check(
                ordered_times,
                "need raw_begin_at <= begin_at < end_at within the day, "
                "end_at = raw_end_at when set",
            ),
        ],
        strict=True,
    )


def _bucket_columns(
    day_start: datetime, day_end: datetime, width: timedelta
) -> dict[str, pa_pl.Column]:
    width_us = width // timedelta(microseconds=1)
    aligned = pa_pl.Check(
        lambda data: data.lazyframe.select(pl.col(data.key).cast(pl.Int64) % width_us == 0),
        error=f"bucket_start not aligned to {width}",
    )
    return {
        "tag_id": pa_pl.Column(pl.Int32),
        "tag_name": pa_pl.Column(pl.String),
        "bucket_start": _ts(checks=[_in_day(day_start, day_end), aligned]),
        "covered_s": pa_pl.Column(pl.Float64, pa_pl.Check.in_range(0.0, width.total_seconds())),
        "count": pa_pl.Column(pl.Int64, pa_pl.Check.ge(0)),
    }


def _null_iff_uncovered(columns: list[str]) -> pa_pl.Check:
    covered = pl.col("covered_s") > 0
    ok = pl.lit(True)
    for column in columns:
        ok = ok & (pl.col(column).is_not_null() == covered)
    return _frame_check(ok, f"{', '.join(columns)} must be null exactly where covered_s = 0")


def samples_schema(
    day_start: datetime, day_end: datetime, width: timedelta
) -> pa_pl.DataFrameSchema:
    value_columns = ["twa", "min", "max", "first", "last"]
    return pa_pl.DataFrameSchema(
        {
            **_bucket_columns(day_start, day_end, width),
            **{c: pa_pl.Column(pl.Float64, nullable=True) for c in value_columns},
        },
        checks=[
            _sorted_by("tag_name", "bucket_start", strictly=True),
            _one_id_per_name(),
            _null_iff_uncovered(value_columns),
            _within("min", "twa", "max"),
            _within("min", "first", "max"),
            _within("min", "last", "max"),
        ],
        strict=True,
    )


def samples_str_schema(
    day_start: datetime, day_end: datetime, width: timedelta
) -> pa_pl.DataFrameSchema:
    return pa_pl.DataFrameSchema(
        {
            **_bucket_columns(day_start, day_end, width),
            **{c: pa_pl.Column(pl.String, nullable=True) for c in ["first", "last", "mode"]},
        },
        checks=[
            _sorted_by("tag_name", "bucket_start", strictly=True),
            _one_id_per_name(),
            _null_iff_uncovered(["first", "last", "mode"]),
        ],
        # held_s (a map) is checked against the Arrow schema by the writer, not by pandera.
        strict="filter",
    )


def schema_for(dataset: Dataset, day_start: datetime, day_end: datetime) -> pa_pl.DataFrameSchema:
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


def _failure(dataset: str, errors: pa_pl.errors.SchemaErrors) -> AuditFailed:
    cases = errors.failure_cases
    counts = cases.group_by("check", maintain_order=True).len()
    summary = "; ".join(f"{check} ({n} cases)" for check, n in counts.iter_rows())[:2000]
    kept = cases.head(_MAX_CASES).select(
        [c for c in ("column", "check", "index", "failure_case") if c in cases.columns]
    )
    listed = [{k: str(v)[:200] for k, v in row.items()} for row in kept.iter_rows(named=True)]
    return AuditFailed(dataset, summary, listed)


@dataclass
class DayAudit:
    """The audit of one tenant-day's partitions, fed chunk by chunk in tag-name order."""

    day_start: datetime
    day_end: datetime
    rows: dict[str, int] = field(default_factory=dict)
    _schemas: dict[str, pa_pl.DataFrameSchema] = field(default_factory=dict)
    _last_tag: dict[str, str] = field(default_factory=dict)

    def check(self, dataset: str, table: pa.Table) -> None:
        """Check one chunk of `dataset`; AuditFailed if it breaks its schema or the seam."""
        if dataset not in self._schemas:
            self._schemas[dataset] = schema_for(registered(dataset), self.day_start, self.day_end)
        self.rows[dataset] = self.rows.get(dataset, 0) + table.num_rows
        if not table.num_rows:
            return
        names = table.column("tag_name")
        first, last = names[0].as_py(), names[-1].as_py()
        previous = self._last_tag.get(dataset)
        if previous is not None and not previous < first:
            raise AuditFailed(
                dataset,
                "chunks out of order: a chunk's first tag does not follow the previous "
                "chunk's last",
                [{"check": "chunk seam", "previous": previous[:200], "first": first[:200]}],
            )
        self._last_tag[dataset] = last
        checked = table.drop_columns([c for c in ("held_s",) if c in table.column_names])
        frame = pl.from_arrow(checked)
        try:
            self._schemas[dataset].validate(frame, lazy=True)
        except pa_pl.errors.SchemaErrors as errors:
            raise _failure(dataset, errors) from None

    def check_counts(self, counts: dict[str, int], streamed_rows: int) -> None:
        """Rows in = kept + duplicates + orphans, and every kept row was written."""
        rows_in = counts.get("rows_in", 0)
        accounted = self.rows.get("transitions", 0) + counts.get("duplicates_dropped", 0)
        accounted += counts.get("orphans_skipped", 0)
        if rows_in != streamed_rows or accounted != rows_in:
            raise AuditFailed(
                "transitions",
                f"row accounting: {streamed_rows} rows streamed, {rows_in} resolved, "
                f"{accounted} kept + dropped + skipped",
                [],
            )


def audit_table(dataset: str, table: pa.Table) -> None:
    """The audit of an undated partition, written in one piece (the tags)."""
    everywhere = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    DayAudit(*everywhere).check(dataset, table)
