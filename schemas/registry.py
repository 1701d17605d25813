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
