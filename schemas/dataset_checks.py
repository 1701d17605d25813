"""The audit of write–audit–publish: every chunk of every dataset is checked against its pandera
schema (the polars backend, on the chunk's Arrow columns) before it is written, and the
invariants that cross chunks are checked at the seams. A partition none of whose chunks failed
may be published; a failure names the dataset and carries pandera's failure cases.

Each dataset's invariants are written once, as named rules (polars expressions). The audit
runs them as one pandera check, so a chunk costs one pass of polars over its columns; only
when that fails does it run them one check per rule, so that the failure cases name the rule
that broke.

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
# Failure cases kept for the step's metadata: enough to see the problem, not a dump.
_MAX_CASES = 20

Rules = dict[str, pl.Expr]


class AuditFailed(TagflowError):
    """A chunk of a dataset broke its schema: nothing of the day is published."""

    def __init__(self, dataset: str, summary: str, cases: list[dict[str, Any]]) -> None:
        super().__init__(f"{dataset} failed its audit: {summary}")
        self.dataset = dataset
        self.summary = summary
        self.cases = cases


def _sorted_by(*keys: str, strictly: bool = False) -> pl.Expr:
    """Rows in lexicographic order of `keys`; `strictly`: no two rows share all keys, which is
    uniqueness at the cost of one comparison per row (sorting brings equal keys together)."""
    ordered, decided = pl.lit(True), pl.lit(False)
    for key in keys:
        previous, current = pl.col(key).shift(1), pl.col(key)
        ordered = ordered & (decided | ~(previous > current).fill_null(False))
        decided = decided | (previous != current).fill_null(False)
    if strictly:
        ordered = ordered & (decided | (pl.int_range(pl.len()) == 0))
    return ordered


def _one_id_per_name() -> pl.Expr:
    """tag_id and tag_name name the same tag on every row: a tag's rows share its id, and no
    two names share one (compared on the first row of each name)."""
    new_name = (pl.col("tag_name") != pl.col("tag_name").shift(1)).fill_null(True)
    same_id = new_name | (pl.col("tag_id") == pl.col("tag_id").shift(1))
    return same_id & (pl.col("tag_id").filter(new_name).n_unique() == new_name.sum())


def _unique(column: str) -> pl.Expr:
    return pl.col(column).n_unique() == pl.len()


def _within(lower: str, value: str, upper: str) -> pl.Expr:
    lo, v, hi = pl.col(lower), pl.col(value), pl.col(upper)
    slack = _REL_TOL * pl.max_horizontal(lo.abs(), hi.abs())
    return (v.is_null() | ((lo - slack <= v) & (v <= hi + slack))).fill_null(False)


def _in_day(column: str, day_start: datetime, day_end: datetime) -> pl.Expr:
    return (pl.col(column) >= day_start) & (pl.col(column) < day_end)


def _kind_rules() -> Rules:
    numeric = pl.col("value_kind") == "numeric"
    return {
        "value_kind is numeric or string": pl.col("value_kind").is_in(["numeric", "string"]),
        "value column matches value_kind": (numeric & pl.col("value_string").is_null())
        | (~numeric & pl.col("value_double").is_null()),
    }


def _tags_rules() -> Rules:
    return {
        "tag_id unique": _unique("tag_id"),
        "tag_name unique": _unique("tag_name"),
        "rows sorted by tag_name": _sorted_by("tag_name"),
        "value_kind is numeric, string, mixed or null": pl.col("value_kind").is_null()
        | pl.col("value_kind").is_in(["numeric", "string", "mixed"]),
        # Derived tags (DESIGN §8): a negative id (never a source serial) and an expression.
        "derived tags and only they have a negative id and an expression": (
            pl.col("derived") == (pl.col("tag_id") < 0)
        )
        & (pl.col("derived") == pl.col("expression").is_not_null()),
    }


def _transitions_rules(day_start: datetime, day_end: datetime) -> Rules:
    return {
        "time within the partition's day": _in_day("time", day_start, day_end),
        "rows strictly sorted by tag_name, time": _sorted_by("tag_name", "time", strictly=True),
        "one tag_id per tag_name": _one_id_per_name(),
        **_kind_rules(),
    }


def _carry_in_rules(day_start: datetime) -> Rules:
    return {
        "tag_id unique": _unique("tag_id"),
        "time before the day": pl.col("time") < day_start,
        "run begins at or before its row": pl.col("run_begin_at") <= pl.col("time"),
        "rows strictly sorted by tag_name": _sorted_by("tag_name", strictly=True),
        **_kind_rules(),
    }


def _spans_rules(day_start: datetime, day_end: datetime) -> Rules:
    raw_end = pl.col("raw_end_at")
    return {
        "id unique": _unique("id"),
        "rows strictly sorted by tag_name, raw_begin_at": _sorted_by(
            "tag_name", "raw_begin_at", strictly=True
        ),
        "one tag_id per tag_name": _one_id_per_name(),
        "a row holds a number, a string or neither": ~(
            pl.col("value_double").is_not_null() & pl.col("value_string").is_not_null()
        ),
        "raw_begin_at <= begin_at < end_at within the day, end_at = raw_end_at when set": (
            (pl.col("begin_at") < pl.col("end_at"))
            & (pl.col("raw_begin_at") <= pl.col("begin_at"))
            & (raw_end.is_null() | ((pl.col("end_at") == raw_end) & (raw_end < day_end)))
            & (pl.col("begin_at") >= day_start)
            & (pl.col("end_at") <= day_end)
        ),
    }


def _bucket_rules(day_start: datetime, day_end: datetime, width: timedelta) -> Rules:
    width_us = width // timedelta(microseconds=1)
    return {
        "bucket_start within the partition's day": _in_day("bucket_start", day_start, day_end),
        f"bucket_start aligned to {width}": pl.col("bucket_start").cast(pl.Int64) % width_us == 0,
        f"covered_s within [0, {width.total_seconds():g}]": pl.col("covered_s").is_between(
            0.0, width.total_seconds()
        ),
        "count >= 0": pl.col("count") >= 0,
        "rows strictly sorted by tag_name, bucket_start": _sorted_by(
            "tag_name", "bucket_start", strictly=True
        ),
        "one tag_id per tag_name": _one_id_per_name(),
    }


def _null_iff_uncovered(columns: list[str]) -> Rules:
    covered = pl.col("covered_s") > 0
    ok = pl.lit(True)
    for column in columns:
        ok = ok & (pl.col(column).is_not_null() == covered)
    return {f"{', '.join(columns)} null exactly where covered_s = 0": ok}


_VALUES = ["twa", "min", "max", "first", "last"]
_STRINGS = ["first", "last", "mode"]


def _samples_rules(day_start: datetime, day_end: datetime, width: timedelta) -> Rules:
    return {
        **_bucket_rules(day_start, day_end, width),
        **_null_iff_uncovered(_VALUES),
        "twa within [min, max]": _within("min", "twa", "max"),
        "first within [min, max]": _within("min", "first", "max"),
        "last within [min, max]": _within("min", "last", "max"),
    }


def _samples_str_rules(day_start: datetime, day_end: datetime, width: timedelta) -> Rules:
    return {**_bucket_rules(day_start, day_end, width), **_null_iff_uncovered(_STRINGS)}


def _columns(dataset: Dataset, nullability: bool) -> dict[str, pa_pl.Column]:
    """The dataset's columns with their polars types, from its Arrow schema (held_s, a map, is
    checked against the Arrow schema by the writer, not by pandera); with `nullability` each
    column also checks its nulls (else a rule does, for all columns at once)."""
    columns = {}
    for field_ in dataset.schema:
        if pa.types.is_map(field_.type) or pa.types.is_list(field_.type):
            continue
        empty = pl.from_arrow(pa.array([], field_.type))
        if not isinstance(empty, pl.Series):  # an Arrow array converts to a Series
            raise TypeError(f"polars made a {type(empty).__name__} of an Arrow array")
        dtype = empty.dtype
        nullable = field_.name in _NULLABLE or not nullability
        columns[field_.name] = pa_pl.Column(dtype, nullable=nullable)
    return columns


def _required(dataset: Dataset) -> pl.Expr:
    """No null in a required column (what each column's own check says in the detailed form)."""
    required = [
        f.name
        for f in dataset.schema
        if f.name not in _NULLABLE and not pa.types.is_map(f.type) and not pa.types.is_list(f.type)
    ]
    return pl.all_horizontal(pl.col(name).is_not_null() for name in required)


# Columns that may hold nulls; every other column of every dataset is required.
_NULLABLE = frozenset(
    {"birth_at", "death_at", "value_kind", "value_double", "value_string", "raw_end_at"}
    | {"expression", "description", "input_deaths"}
    | set(_VALUES)
    | set(_STRINGS)
)


def rules_for(dataset: Dataset, day_start: datetime, day_end: datetime) -> Rules:
    match dataset.kind:
        case Kind.TAGS:
            return _tags_rules()
        case Kind.TRANSITIONS:
            return _transitions_rules(day_start, day_end)
        case Kind.CARRY_IN:
            return _carry_in_rules(day_start)
        case Kind.SPANS:
            return _spans_rules(day_start, day_end)
        case Kind.SAMPLES_STR:
            return _samples_str_rules(day_start, day_end, _width(dataset))
        case Kind.SAMPLES:
            return _samples_rules(day_start, day_end, _width(dataset))
        case Kind.ANNOTATIONS | Kind.ANNOTATION_HISTORY:
            # Copies of the state database, whose constraints hold their rows; no day audit.
            raise TagflowError(f"{dataset.name} is an export, not audited by day")


def _width(dataset: Dataset) -> timedelta:
    """The bucket width of a samples dataset (every one has one)."""
    if dataset.width is None:
        raise ValueError(f"the samples dataset {dataset.name} has no bucket width")
    return dataset.width


def _check(name: str, expression: pl.Expr) -> pa_pl.Check:
    return pa_pl.Check(lambda data: data.lazyframe.select(expression), name=name, error=name)


@dataclass(frozen=True)
class DatasetSchema:
    """A dataset's pandera schema for one day, in two forms built from the same rules."""

    dataset: Dataset
    fused: pa_pl.DataFrameSchema
    detailed: pa_pl.DataFrameSchema

    @classmethod
    def of(cls, dataset: Dataset, day_start: datetime, day_end: datetime) -> DatasetSchema:
        rules = rules_for(dataset, day_start, day_end)
        every_rule = _required(dataset)
        for expression in rules.values():
            every_rule = every_rule & expression.fill_null(False)
        # "filter": extra columns (samples_str's held_s) are left to the Arrow schema.
        fused = pa_pl.DataFrameSchema(
            _columns(dataset, nullability=False),
            checks=[_check(f"{dataset.name} invariants", every_rule)],
            strict="filter",
        )
        detailed = pa_pl.DataFrameSchema(
            _columns(dataset, nullability=True),
            checks=[_check(name, rule.fill_null(False)) for name, rule in rules.items()],
            strict="filter",
        )
        return cls(dataset, fused, detailed)

    def validate(self, frame: pl.DataFrame) -> None:
        """AuditFailed, with the failing rules' cases, if `frame` breaks the schema."""
        try:
            self.fused.validate(frame, lazy=True)
        except pa_pl.errors.SchemaErrors:
            try:
                self.detailed.validate(frame, lazy=True)
            except pa_pl.errors.SchemaErrors as errors:
                raise _failure(self.dataset.name, errors) from None
            raise AssertionError("the fused and detailed schemas disagree") from None


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
    _schemas: dict[str, DatasetSchema] = field(default_factory=dict)
    _last_tag: dict[str, str] = field(default_factory=dict)

    def check(self, dataset: str, table: pa.Table) -> None:
        """Check one chunk of `dataset`; AuditFailed if it breaks its schema or the seam."""
        if dataset not in self._schemas:
            entry = registered(dataset)
            self._schemas[dataset] = DatasetSchema.of(entry, self.day_start, self.day_end)
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
        if not isinstance(frame, pl.DataFrame):  # an Arrow table converts to a DataFrame
            raise TypeError(f"polars made a {type(frame).__name__} of an Arrow table")
        self._schemas[dataset].validate(frame)

    def check_counts(self, counts: dict[str, int], streamed_rows: int) -> None:
        """Rows in = kept + duplicates + orphans, and every kept row was written (the derived
        tags' transitions, counted apart, are no source rows)."""
        rows_in = counts.get("rows_in", 0)
        kept = self.rows.get("transitions", 0) - counts.get("derived_transitions", 0)
        accounted = kept + counts.get("duplicates_dropped", 0)
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
