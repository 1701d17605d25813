"""The dataset registry: every dataset tagflow writes, with the facts each layer needs about it
(Arrow schema, sort keys, the column a time range is reported on, whether it is partitioned by
day, its bucket width, what its rows mean). Every other table of datasets derives from it, so
adding a sample width is one entry in WIDTHS. DATASETS are the day step's; ANNOTATION_DATASETS
the export of the state database's span annotations (DESIGN §9), written by tenant alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

import pyarrow as pa

from tagflow.errors import TagflowError
from tagflow.schemas.arrow import (
    CARRY_IN,
    SAMPLES,
    SAMPLES_STR,
    SPAN_ANNOTATION_HISTORY,
    SPAN_ANNOTATIONS,
    SPANS,
    TAGS_DATASET,
    TRANSITIONS,
)


class Kind(StrEnum):
    """What a dataset's rows are; datasets of one kind share a schema and its checks."""

    TAGS = "tags"
    TRANSITIONS = "transitions"
    CARRY_IN = "carry_in"
    SPANS = "spans"
    SAMPLES = "samples"
    SAMPLES_STR = "samples_str"
    ANNOTATIONS = "annotations"
    ANNOTATION_HISTORY = "annotation_history"


@dataclass(frozen=True)
class Dataset:
    name: str
    kind: Kind
    schema: pa.Schema
    # Rows are sorted by these columns (declared in each file's footer for readers).
    sort_keys: tuple[str, ...]
    # The column whose range a materialisation reports; None where rows have no time.
    time_column: str | None
    # One file per tenant and UTC day; otherwise one file per tenant.
    dated: bool
    # What one row means (the asset's description in the Dagster UI).
    description: str
    # The Dagster asset group: read from the source, computed from it, or written by people.
    group: str
    # The datasets its rows are computed from (the asset graph's lineage).
    parents: tuple[str, ...] = ()
    # Published last of its branch of the day step: a day whose every such dataset is there
    # has every dataset there (the read API's coverage counts days by them).
    last_of_branch: bool = False
    width_name: str | None = None
    width: timedelta | None = None

    def column_description(self, column: str) -> str:
        """What `column` holds in this dataset (Dagster's column schema shows it)."""
        if self.kind in (Kind.ANNOTATIONS, Kind.ANNOTATION_HISTORY):
            return _ANNOTATION_COLUMNS[column]
        return _COLUMNS[column]


# What each column of the day's datasets holds: a name means the same in every dataset that
# has it (a sample's `first` is a number or a string as its dataset is numeric or string).
_COLUMNS: dict[str, str] = {
    "tag_id": "The tag's id in the source's tag_names (negative for a derived tag).",
    "tag_name": "The tag's name, unique in the tenant.",
    "birth_at": "When the tag was created in the source (UTC).",
    "death_at": "When the tag was retired in the source (UTC); null while it lives.",
    "value_kind": "'numeric' or 'string': the source table the tag's rows come from.",
    "derived": "True for a derived tag, computed from other tags by its expression.",
    "expression": "A derived tag's expression; null for a source tag.",
    "description": "A derived tag's description; null for a source tag.",
    "input_deaths": "The death times of the source tags a derived tag reads: where it may "
    "become undefined.",
    "time": "The instant of the row (UTC, microseconds).",
    "value_double": "The numeric value; null for a string tag or a null reading.",
    "value_string": "The string value; null for a numeric tag or a null reading.",
    "run_begin_at": "When the run of equal values that this row continues began (UTC).",
    "id": "The span's id, stable across days and reruns (span annotations join on it).",
    "raw_begin_at": "When the run of equal values began, possibly before the day (UTC).",
    "raw_end_at": "When the run ended, possibly after the day; null if it had not ended "
    "before midnight (UTC).",
    "begin_at": "The run's start clipped to the day (UTC).",
    "end_at": "The run's end clipped to the day (UTC).",
    "bucket_start": "The start of the bucket (UTC).",
    "twa": "Time-weighted average over the seconds the tag held a finite number.",
    "covered_s": "Seconds of the bucket in which the tag held a value.",
    "min": "The smallest value held in the bucket.",
    "max": "The largest value held in the bucket.",
    "first": "The value held at the bucket's first covered instant.",
    "last": "The value held at the bucket's last covered instant.",
    "mode": "The string held longest in the bucket (ties to the smallest).",
    "count": "Transitions (kept source rows) in the bucket.",
    "held_s": "Seconds each string was held in the bucket.",
}

# The columns of the export of span annotations (DESIGN §9).
_ANNOTATION_COLUMNS: dict[str, str] = {
    "id": "The annotated span's id: joins spans.id (a person's span has an id of its own).",
    "origin": "'computed' for a span of the spans dataset, 'user' for one a person added.",
    "tag_name": "The tag the span belongs to.",
    "labels": "The span's labels, name to value.",
    "note": "A person's note on the span.",
    "begin_at": "The corrected start (UTC); null keeps the computed one.",
    "end_at": "The corrected end (UTC); null keeps the computed one.",
    "hidden": "Whether a person hid the span.",
    "revision": "The annotation's revision, one more at each change.",
    "updated_at": "When it was last changed (UTC).",
    "updated_by": "Who changed it last.",
    "computed_begin_at": "Where the computed span began when last written (UTC).",
    "computed_end_at": "Where the computed span ended when last written (UTC).",
    "moved_to": "The span the annotation was moved to; null if it was not moved.",
    "seq": "The change's place in the order changes were made (only grows).",
    "before": "The changed content before the change (JSON); null for the first.",
    "after": "The changed content after the change (JSON).",
    "changed_by": "Who made the change.",
    "changed_at": "When the change was made (UTC).",
}


# The bucket widths materialised, finest first: each is rolled up exactly from the one before.
WIDTHS: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}

EXTRACTED, COMPUTED, ANNOTATED = "extract", "compute", "annotations"
_FINER = dict(zip(list(WIDTHS)[1:], list(WIDTHS)[:-1], strict=True))
_COARSEST = list(WIDTHS)[-1]

_NUMERIC_DOC = (
    "Per numeric tag and {width} bucket, last-observation-carried-forward statistics over the "
    "time the tag held a finite number: time-weighted average, covered seconds, min, max, first, "
    "last, and the count of transitions in the bucket."
)
_STRING_DOC = (
    "Per string tag and {width} bucket: covered seconds (a non-null string held), first, last, "
    "the string held longest (mode; ties to the smallest), seconds held per string, and the count "
    "of transitions in the bucket."
)


def samples_name(width_name: str, string: bool) -> str:
    """The dataset of numeric (or string) samples at a materialised width."""
    return f"samples_str_{width_name}" if string else f"samples_{width_name}"


def _samples(width_name: str, string: bool) -> Dataset:
    finer = _FINER.get(width_name)
    return Dataset(
        name=samples_name(width_name, string),
        kind=Kind.SAMPLES_STR if string else Kind.SAMPLES,
        schema=SAMPLES_STR if string else SAMPLES,
        sort_keys=("tag_name", "bucket_start"),
        time_column="bucket_start",
        dated=True,
        description=(_STRING_DOC if string else _NUMERIC_DOC).format(width=width_name),
        group=COMPUTED,
        # The finest width is computed from the day's rows, each coarser one rolled up.
        parents=("transitions", "carry_in") if finer is None else (samples_name(finer, string),),
        # The string branch is published after the numeric one (the order of _ALL).
        last_of_branch=string and width_name == _COARSEST,
        width_name=width_name,
        width=WIDTHS[width_name],
    )


_ALL = [
    Dataset(
        name="tags",
        kind=Kind.TAGS,
        schema=TAGS_DATASET,
        sort_keys=("tag_name",),
        time_column=None,
        dated=False,
        description="The tenant's tags (tag_names) as of extraction: id, name, birth, death and "
        "whether the tag has numeric rows, string rows or both in its whole history; and its "
        "derived tags (negative ids, marked derived, with their expression). One file per "
        "tenant, refreshed by every run.",
        group=EXTRACTED,
    ),
    Dataset(
        name="transitions",
        kind=Kind.TRANSITIONS,
        schema=TRANSITIONS,
        sort_keys=("tag_name", "time"),
        time_column="time",
        dated=True,
        description="Every kept source row of the day (both tables merged), one per tag and "
        "instant after resolving duplicates, sorted by tag name and time.",
        group=EXTRACTED,
        parents=("tags",),
    ),
    Dataset(
        name="carry_in",
        kind=Kind.CARRY_IN,
        schema=CARRY_IN,
        sort_keys=("tag_name",),
        time_column="time",
        dated=True,
        description="Per tag still alive at midnight, the last row before the day and the time "
        "its run of equal values began: what spans and samples hold at 00:00.",
        group=EXTRACTED,
        parents=("tags",),
    ),
    Dataset(
        name="spans",
        kind=Kind.SPANS,
        schema=SPANS,
        sort_keys=("tag_name", "raw_begin_at"),
        time_column="begin_at",
        dated=True,
        description="Periods of constant value (runs) of every tag intersecting the day: "
        "raw_begin_at/raw_end_at are the run's true start and end (raw_end_at null if the run "
        "has not ended before midnight), begin_at/end_at the run clipped to the day; id is "
        "stable across days and reruns.",
        group=COMPUTED,
        parents=("transitions", "carry_in"),
        last_of_branch=True,
    ),
    *(_samples(width_name, False) for width_name in WIDTHS),
    *(_samples(width_name, True) for width_name in WIDTHS),
]

DATASETS: dict[str, Dataset] = {dataset.name: dataset for dataset in _ALL}
DATED: tuple[str, ...] = tuple(name for name, dataset in DATASETS.items() if dataset.dated)

# Not computed from the source: copies of what people wrote (tagflow.annotations), one file per
# tenant, replaced whole by each export.
ANNOTATION_DATASETS: dict[str, Dataset] = {
    "span_annotations": Dataset(
        name="span_annotations",
        kind=Kind.ANNOTATIONS,
        schema=SPAN_ANNOTATIONS,
        sort_keys=("id",),
        time_column="updated_at",
        dated=False,
        description="What people wrote on spans (DESIGN §9), one row per annotated span as it "
        "is now: labels, note, corrected bounds (null keeps the computed bound), hidden, "
        "revision, who changed it last and when. `id` joins `spans.id`; origin `user` marks a "
        "span a person added; computed_begin_at / computed_end_at keep where a computed span "
        "was, so a detached annotation (its id no longer computed) still says it.",
        group=ANNOTATED,
    ),
    "span_annotation_history": Dataset(
        name="span_annotation_history",
        kind=Kind.ANNOTATION_HISTORY,
        schema=SPAN_ANNOTATION_HISTORY,
        sort_keys=("seq",),
        time_column="changed_at",
        dated=False,
        description="Every change ever made to the span annotations, in the order made (`seq`): "
        "the span id, the revision it made, the content before and after (JSON), who and when. "
        "Nothing is deleted: hiding a span is a change.",
        group=ANNOTATED,
    ),
}


def dataset(name: str) -> Dataset:
    """The registry entry of `name`; a TagflowError for names that are not datasets."""
    try:
        return DATASETS.get(name) or ANNOTATION_DATASETS[name]
    except (KeyError, TypeError):
        raise TagflowError(f"unknown dataset {str(name)[:40]!r}") from None
