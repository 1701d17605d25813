"""The records the client returns (Tag, Span), the Arrow shapes every transport exchanges,
and the conversions between them. Both transports produce the same Arrow tables, and the
client turns those into records and DataFrames here, so answers cannot differ by transport."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from tagflow.collector import collector_paused
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


class Span(NamedTuple):
    """A run of one value of a tag intersecting the query range (DESIGN §2).

    raw_begin_at/raw_end_at are the run's true bounds (raw_end_at None when the run has not
    ended before the range end); begin_at/end_at are the run clipped to the range, from its
    corrected bounds where a person corrected them. `metadata` is None for a computed span
    nobody annotated, else its annotation (docs/read-api.md): labels, note, revision, hidden,
    origin ('computed' or 'user'), updated_at, updated_by and, where a bound was corrected,
    computed_begin_at / computed_end_at. A person's span has value None.

    A named tuple, immutable: a read over a year builds a hundred thousand of them, and a
    tuple is built in a third of the time of a frozen dataclass (`_replace` and `_asdict`
    stand in for dataclasses' replace and asdict)."""

    id: int
    tag_name: str
    value: float | str | None
    begin_at: datetime
    end_at: datetime
    raw_begin_at: datetime
    raw_end_at: datetime | None
    metadata: dict | None = None

    def __eq__(self, other: object) -> bool:
        # A span equals only a span, and NaN runs are real runs: two spans holding NaN are
        # equal (a tuple's compare says no).
        if not isinstance(other, Span):
            return NotImplemented
        return self._key() == other._key()

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        # Without the metadata (a dict): equal spans still hash alike.
        return hash(self._key()[:-1])

    def _key(self) -> tuple:
        value: object = self.value
        if isinstance(value, float) and math.isnan(value):
            value = ("nan",)
        return (*self[:2], value, *self[3:])


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


_SPAN_TIMES = ("begin_at", "end_at", "raw_begin_at", "raw_end_at")


def _aware_datetimes(micros: np.ndarray) -> list[datetime]:
    """Aware UTC datetimes of µs since the epoch, built from datetime's 10-byte state (the
    form pickle stores and datetime's constructor takes back): the calendar fields come from
    numpy for all values at once, and each datetime is one C call. About 2.5x faster than
    `epoch + timedelta(µs)` per value, which made up a third of a large get_spans."""
    at = micros.astype("datetime64[us]")
    days = at.astype("datetime64[D]")
    months = days.astype("datetime64[M]")
    years = months.astype("datetime64[Y]")
    year = years.astype(np.int64) + 1970
    seconds, micro = np.divmod((at - days).astype(np.int64), 1_000_000)
    hours, seconds = np.divmod(seconds, 3600)
    minutes, seconds = np.divmod(seconds, 60)
    state = np.empty((len(micros), 10), np.uint8)
    state[:, 0], state[:, 1] = year >> 8, year & 0xFF
    state[:, 2] = (months - years).astype(np.int64) + 1
    state[:, 3] = (days - months).astype(np.int64) + 1
    state[:, 4], state[:, 5], state[:, 6] = hours, minutes, seconds
    state[:, 7], state[:, 8], state[:, 9] = micro >> 16, (micro >> 8) & 0xFF, micro & 0xFF
    states = state.view("V10").ravel().tolist()
    # The stubs know only datetime's public signature, not its state form.
    return list(map(datetime, states, repeat(UTC, len(micros))))  # type: ignore[arg-type]


def _times(*columns: pa.ChunkedArray | pa.Array) -> list[list[datetime | None]]:
    """Aware UTC datetimes of timestamp columns, one list per column. An instant a column
    shares with an earlier column in the same row or a neighbouring one reuses that column's
    (immutable) datetime: a span's end is the next span's begin and its raw bounds are mostly
    its bounds, so spans' four columns hold about a quarter as many instants as values, found
    by a few array compares rather than hashing them all."""
    built: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    lists = []
    for column in columns:
        micros = column.cast(pa.int64())
        values = micros.fill_null(0).to_numpy(zero_copy_only=False)
        valid = (
            micros.is_valid().to_numpy(zero_copy_only=False)
            if micros.null_count
            else np.ones(len(values), bool)
        )
        objects = np.full(len(values), None, dtype=object)
        todo = valid.copy()
        for known, known_valid, known_objects in built:
            if len(known) != len(values):
                continue
            for mine, theirs in _NEIGHBOURS:
                hit = todo[mine] & known_valid[theirs] & (values[mine] == known[theirs])
                at = np.flatnonzero(hit)
                objects[mine][at] = known_objects[theirs][at]
                todo[mine][at] = False
        rest = np.flatnonzero(todo)
        if len(rest):
            objects[rest] = _distinct_datetimes(values[rest])
        built.append((values, valid, objects))
        lists.append(objects.tolist())
    return lists


# Row i of a column against rows i, i - 1 and i + 1 of an earlier one.
_NEIGHBOURS = (
    (slice(None), slice(None)),
    (slice(1, None), slice(None, -1)),
    (slice(None, -1), slice(1, None)),
)


def _distinct_datetimes(micros: np.ndarray) -> np.ndarray:
    """An object array of datetimes of `micros`, one object per distinct instant."""
    step = np.diff(micros)
    if (step > 0).all() or (step < 0).all():
        return np.fromiter(_aware_datetimes(micros), dtype=object, count=len(micros))
    # pandas' hash-based factorize: about 3x faster than np.unique's sort here.
    position, instants = pd.factorize(micros)
    # fromiter: np.array probes every object for its type.
    shared = np.fromiter(_aware_datetimes(instants), dtype=object, count=len(instants))
    return shared[position]


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
    births, deaths = _times(table.column("birth_at"), table.column("death_at"))
    rows = zip(
        table.column("tag_id").to_pylist(),
        table.column("tag_name").to_pylist(),
        births,
        deaths,
        derived,
        expressions,
        strict=True,
    )
    # Each Tag's fields set in one go: a frozen dataclass's __init__ sets them one by one
    # through object.__setattr__, about twice the time for a tenant's thousands of tags.
    tags = list(map(object.__new__, repeat(Tag, count)))
    set_fields = object.__setattr__
    for tag, (id, name, birth_at, death_at, is_derived, expression) in zip(tags, rows, strict=True):
        set_fields(
            tag,
            "__dict__",
            {
                "id": id,
                "name": name,
                "birth_at": birth_at,
                "death_at": death_at,
                "derived": is_derived,
                "expression": expression,
            },
        )
    return tags


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
    """The answer's Span records, each one tuple built from its row; a read returns
    thousands."""
    with collector_paused():
        return _spans_from_table(table)


def _spans_from_table(table: pa.Table) -> SpanList:
    count = table.num_rows
    begins, ends, raw_begins, raw_ends = _times(*(table.column(name) for name in _SPAN_TIMES))
    metadata = (
        _metadata(table, raw_begins, raw_ends)
        if "origin" in table.column_names
        else repeat(None, count)
    )
    rows = zip(
        table.column("id").to_pylist(),
        _names(table.column("tag_name")),
        _values(table),
        begins,
        ends,
        raw_begins,
        raw_ends,
        metadata,
        strict=True,
    )
    # tuple.__new__ takes each row as it is; Span's own __new__ is Python and binds arguments.
    spans = SpanList(map(tuple.__new__, repeat(Span, count), rows))
    spans.annotations_unavailable = annotations_state(table) == ANNOTATIONS_UNAVAILABLE
    return spans


def _names(column: pa.ChunkedArray) -> list[str]:
    """Each span's tag name: one str for all rows where they name one tag, as get_spans does."""
    names = column.unique()
    if len(names) == 1 and not column.null_count:
        return [names[0].as_py()] * len(column)
    return column.to_pylist()


def _values(table: pa.Table) -> list[float | str | None]:
    """Each span's value: its string, else its number."""
    strings = table.column("value_string")
    numbers = table.column("value_double")
    if strings.null_count == len(strings):
        return numbers.to_pylist()
    if numbers.null_count == len(numbers):
        return strings.to_pylist()
    return [
        text if text is not None else number
        for text, number in zip(strings.to_pylist(), numbers.to_pylist(), strict=True)
    ]


def _metadata(
    table: pa.Table, raw_begins: list[datetime | None], raw_ends: list[datetime | None]
) -> list[dict[str, Any] | None]:
    """Per row, its annotation as `Span.metadata` (None where none), built for the annotated
    rows alone: every labels text parsed by one json.loads; the computed bounds shown are the
    span's raw bounds (the same objects)."""
    metadata: list[dict[str, Any] | None] = [None] * table.num_rows
    rows = np.flatnonzero(table.column("origin").is_valid().to_numpy(zero_copy_only=False))
    if not len(rows):
        return metadata
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
        record = {
            "labels": label_map,
            "note": note,
            "revision": revision,
            "hidden": hidden,
            "origin": origin,
            "updated_at": at,
            "updated_by": by,
        }
        if corrected:
            record["computed_begin_at"] = raw_begins[row]
            record["computed_end_at"] = raw_ends[row]
        metadata[row] = record
    return metadata


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
    be called "time": columns are renamed to their positions for the conversion, which builds
    the frame's blocks in one go, and named after it). Against a concat of one Series per
    column: 500 tags 3.6 ms against 24."""
    positions = [str(i) for i in range(table.num_columns)]
    frame = table.replace_schema_metadata(None).rename_columns(positions).to_pandas()
    frame.columns = list(table.column_names)
    return frame
