"""The records the client returns (Tag, Span), the Arrow shapes every transport exchanges,
and the conversions between them. Both transports produce the same Arrow tables, and the
client turns those into records and DataFrames here, so answers cannot differ by transport."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tagflow.schemas.arrow import TS

# get_tags: the tags dataset without value_kind; derived tags (DESIGN §8) marked, with their
# expression.
TAG_LIST = pa.schema(
    [
        ("tag_id", pa.int32()),
        ("tag_name", pa.string()),
        ("birth_at", TS),
        ("death_at", TS),
        ("derived", pa.bool_()),
        ("expression", pa.string()),
    ]
)

# get_spans: stitched spans of one tag over the query range, newest first.
SPAN_LIST = pa.schema(
    [
        ("id", pa.int64()),
        ("tag_name", pa.string()),
        ("value_double", pa.float64()),
        ("value_string", pa.string()),
        ("begin_at", TS),
        ("end_at", TS),
        ("raw_begin_at", TS),
        ("raw_end_at", TS),
    ]
)

# get_spans where a state database is configured (DESIGN §9): SPAN_LIST, then the annotation
# of each span, null for a computed span nobody annotated. Labels travel as JSON text.
ANNOTATED_SPAN_LIST = pa.schema(
    [
        *SPAN_LIST,
        ("origin", pa.string()),
        ("labels", pa.string()),
        ("note", pa.string()),
        ("revision", pa.int64()),
        ("hidden", pa.bool_()),
        ("updated_at", TS),
        ("updated_by", pa.string()),
        ("computed_begin_at", TS),
        ("computed_end_at", TS),
    ]
)
# The schema metadata key of a spans answer saying whether the annotations were merged
# (ANNOTATIONS_MERGED) or the state database could not be read (ANNOTATIONS_UNAVAILABLE); the
# HTTP service sends it as the ANNOTATIONS_HEADER too. Absent: no state database configured.
ANNOTATIONS_KEY = b"tagflow.annotations"
ANNOTATIONS_MERGED = "merged"
ANNOTATIONS_UNAVAILABLE = "unavailable"
ANNOTATIONS_HEADER = "X-Tagflow-Annotations"

# get_metric_data / get_metric_arrow: one row per transition, sorted by time.
METRIC_DATA = pa.schema(
    [
        ("tag_name", pa.string()),
        ("time", TS),
        ("value_double", pa.float64()),
        ("value_string", pa.string()),
    ]
)


@dataclass(frozen=True)
class Tag:
    """A tag of the tenant (tag_names): id, name, and birth/death times (None if unset). A
    derived tag (DESIGN §8) has `derived` set, a negative id and its `expression`."""

    id: int
    name: str
    birth_at: datetime | None
    death_at: datetime | None
    derived: bool = False
    expression: str | None = None


@dataclass(frozen=True)
class Span:
    """A run of one value of a tag intersecting the query range (DESIGN §2).

    raw_begin_at/raw_end_at are the run's true bounds (raw_end_at None when the run has not
    ended before the range end); begin_at/end_at are the run clipped to the range, from its
    corrected bounds where a person corrected them. `metadata` is None for a computed span
    nobody annotated, else its annotation (docs/read-api.md): labels, note, revision, hidden,
    origin ('computed' or 'user'), updated_at, updated_by and, where a bound was corrected,
    computed_begin_at / computed_end_at. A person's span has value None."""

    id: int
    tag_name: str
    value: float | str | None
    begin_at: datetime
    end_at: datetime
    raw_begin_at: datetime
    raw_end_at: datetime | None
    metadata: dict | None = None

    def __eq__(self, other: object) -> bool:
        # NaN runs are real runs: two spans holding NaN are equal (dataclass eq says no).
        if not isinstance(other, Span):
            return NotImplemented
        mine, theirs = self._key(), other._key()
        return mine == theirs

    def __hash__(self) -> int:
        # Without the metadata (a dict): equal spans still hash alike.
        return hash(self._key()[:-1])

    def _key(self) -> tuple:
        value: object = self.value
        if isinstance(value, float) and math.isnan(value):
            value = ("nan",)
        return (
            self.id,
            self.tag_name,
            value,
            self.begin_at,
            self.end_at,
            self.raw_begin_at,
            self.raw_end_at,
            self.metadata,
        )


@dataclass(frozen=True)
class SpanChange:
    """One change of a span's annotation (get_span_history): the revision it made, the content
    before (None for the change that created the record) and after (labels, note, begin_at and
    end_at as ISO text or None, hidden, moved_to), who made it (the writing key's label) and
    when (the state database's clock)."""

    revision: int
    before: dict[str, Any] | None
    after: dict[str, Any]
    by: str
    at: datetime


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SPAN_TIMES = ("begin_at", "end_at", "raw_begin_at", "raw_end_at")


def _times(*columns: pa.ChunkedArray | pa.Array) -> list[list[datetime | None]]:
    """Aware UTC datetimes of timestamp columns, one list per column. Each distinct instant
    becomes one shared (immutable) datetime: a span's end is mostly the next span's begin, so
    the four columns of spans hold about a quarter as many instants as values. About 3x faster
    than a datetime per value, itself about 7x faster than Arrow's to_pylist (a zoneinfo-aware
    datetime per value)."""
    micros = [column.cast(pa.int64()) for column in columns]
    values = np.concatenate([m.fill_null(0).to_numpy(zero_copy_only=False) for m in micros])
    instants, position = np.unique(values, return_inverse=True)
    # The last slot is None, for NULLs.
    shared = np.array(
        [_EPOCH + timedelta(microseconds=v) for v in instants.tolist()] + [None], dtype=object
    )
    position = position.reshape(-1)
    at, lists = 0, []
    for column in micros:
        mine = position[at : at + len(column)]
        at += len(column)
        if column.null_count:
            mine = np.where(column.is_null().to_numpy(zero_copy_only=False), len(instants), mine)
        lists.append(shared[mine].tolist())
    return lists


def tags_from_table(table: pa.Table) -> list[Tag]:
    count = table.num_rows
    # A service from before derived tags answers without their columns.
    derived = (
        table.column("derived").fill_null(False).to_pylist()
        if "derived" in table.column_names
        else [False] * count
    )
    expressions = (
        table.column("expression").to_pylist()
        if "expression" in table.column_names
        else [None] * count
    )
    return [
        Tag(*row)
        for row in zip(
            table.column("tag_id").to_pylist(),
            table.column("tag_name").to_pylist(),
            *_times(table.column("birth_at"), table.column("death_at")),
            derived,
            expressions,
            strict=True,
        )
    ]


class SpanList(list[Span]):
    """get_spans' answer: the spans, and whether their annotations are in it.
    `annotations_unavailable` is True when the state database could not be read: the computed
    spans are answered without their annotations (corrected bounds, hidden spans and people's
    spans missing), and the client warned with AnnotationsUnavailable."""

    annotations_unavailable: bool = False


def annotations_state(table: pa.Table) -> str | None:
    """ANNOTATIONS_MERGED or ANNOTATIONS_UNAVAILABLE of a spans answer; None without a state
    database."""
    value = (table.schema.metadata or {}).get(ANNOTATIONS_KEY)
    return None if value is None else value.decode()


def spans_from_table(table: pa.Table) -> SpanList:
    strings = table.column("value_string").to_pylist()
    numbers = table.column("value_double").to_pylist()
    values = [
        text if text is not None else number for text, number in zip(strings, numbers, strict=True)
    ]
    rows = zip(
        table.column("id").to_pylist(),
        table.column("tag_name").to_pylist(),
        values,
        *_times(*(table.column(name) for name in _SPAN_TIMES)),
        strict=True,
    )
    spans = SpanList(_span(*row) for row in rows)
    spans.annotations_unavailable = annotations_state(table) == ANNOTATIONS_UNAVAILABLE
    if "origin" in table.column_names:
        _attach_metadata(spans, table)
    return spans


def _attach_metadata(spans: list[Span], table: pa.Table) -> None:
    """Each annotated span's `metadata`, built for those rows alone: every labels text parsed
    by one json.loads; the computed bounds shown are the span's raw bounds (the same objects)."""
    rows = np.flatnonzero(table.column("origin").is_valid().to_numpy(zero_copy_only=False))
    if not len(rows):
        return
    annotated = table.take(pa.array(rows))
    labels = json.loads("[" + ",".join(annotated.column("labels").to_pylist()) + "]")
    (updated_at,) = _times(annotated.column("updated_at"))
    fields = zip(
        rows.tolist(),
        annotated.column("origin").to_pylist(),
        labels,
        annotated.column("note").to_pylist(),
        annotated.column("revision").to_pylist(),
        annotated.column("hidden").to_pylist(),
        updated_at,
        annotated.column("updated_by").to_pylist(),
        annotated.column("computed_begin_at").is_valid().to_pylist(),
        strict=True,
    )
    for row, origin, label_map, note, revision, hidden, at, by, corrected in fields:
        span = spans[row]
        metadata = {
            "labels": label_map,
            "note": note,
            "revision": revision,
            "hidden": hidden,
            "origin": origin,
            "updated_at": at,
            "updated_by": by,
        }
        if corrected:
            metadata["computed_begin_at"] = span.raw_begin_at
            metadata["computed_end_at"] = span.raw_end_at
        span.__dict__["metadata"] = metadata


def _span(
    id: int,
    tag_name: str,
    value: float | str | None,
    begin_at: datetime,
    end_at: datetime,
    raw_begin_at: datetime,
    raw_end_at: datetime | None,
) -> Span:
    """Span(...) built in about half the time: a frozen dataclass's __init__ sets each field
    through object.__setattr__, and a read returns thousands of spans; this sets the record's
    fields in one go (the same object: equality, hash and repr read the fields)."""
    span = object.__new__(Span)
    object.__setattr__(
        span,
        "__dict__",
        {
            "id": id,
            "tag_name": tag_name,
            "value": value,
            "begin_at": begin_at,
            "end_at": end_at,
            "raw_begin_at": raw_begin_at,
            "raw_end_at": raw_end_at,
            "metadata": None,
        },
    )
    return span


def metric_frame(table: pa.Table) -> pd.DataFrame:
    """tag_name, time, value: value is float64 when the rows hold no strings (NaN for NULL),
    else object holding floats, strings and None (NULL)."""
    numbers = table.column("value_double").to_numpy(zero_copy_only=False)
    strings = table.column("value_string")
    if strings.null_count == len(strings):
        value = pd.Series(numbers, dtype="float64")
    else:
        value = pd.Series(numbers, dtype=object)
        is_string = strings.is_valid().to_numpy(zero_copy_only=False)
        value[is_string] = strings.to_numpy(zero_copy_only=False)[is_string]
        # A NULL number reads None next to strings, not NaN, so "no value" reads one way.
        value[
            table.column("value_double").is_null().to_numpy(zero_copy_only=False) & ~is_string
        ] = None
    return pd.DataFrame(
        {
            "tag_name": table.column("tag_name").to_pandas(),
            "time": table.column("time").to_pandas(),
            "value": value,
        }
    )


def wide_frame(table: pa.Table) -> pd.DataFrame:
    """A `time` + one column per tag table as a DataFrame, column order kept (a tag may even
    be called "time": columns are placed by position, not by name)."""
    frame = pd.concat([table.column(i).to_pandas() for i in range(table.num_columns)], axis=1)
    frame.columns = list(table.column_names)
    return frame
