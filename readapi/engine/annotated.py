"""Span annotations merged into a spans answer (DESIGN §9), in Arrow and numpy: one pass over
the computed spans and the annotations of one read, no Python object per span.

A span's effective bounds are its corrected ones where a person corrected them, else the
computed ones; the range filter, the clipping and the order (newest first) use them. The
computed run's own bounds stay raw_begin_at / raw_end_at. No I/O here: the reader fetches the
annotations (one query) and the computed spans."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tagflow.readapi.models import (
    ANNOTATED_SPAN_LIST,
    ANNOTATIONS_KEY,
    ANNOTATIONS_MERGED,
    ANNOTATIONS_UNAVAILABLE,
    SPAN_LIST,
)
from tagflow.transforms.columns import NO_TIME, time_us, us_to_time

# The annotation columns a merged answer carries, as the store names them.
_CARRIED = ["origin", "labels", "note", "revision", "hidden", "updated_at", "updated_by"]
# A span's own columns before its bounds.
_OWN = ["id", "tag_name", "value_double", "value_string"]
# The schemas of answers whose annotations were merged / could not be read.
_MERGED = ANNOTATED_SPAN_LIST.with_metadata({ANNOTATIONS_KEY: ANNOTATIONS_MERGED.encode()})
_UNAVAILABLE = ANNOTATED_SPAN_LIST.with_metadata(
    {ANNOTATIONS_KEY: ANNOTATIONS_UNAVAILABLE.encode()}
)


def without_annotations(spans: pa.Table) -> pa.Table:
    """A spans answer (SPAN_LIST) of a read whose annotations could not be read: the computed
    spans as they are, the annotation columns null, marked unavailable."""
    nulls = [pa.nulls(spans.num_rows, field.type) for field in ANNOTATED_SPAN_LIST][
        len(SPAN_LIST) :
    ]
    return pa.Table.from_arrays([*spans.columns, *nulls], schema=_UNAVAILABLE)


def effective_bounds(annotations: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Per annotation, the bounds it gives its span as µs: the correction, else the computed
    bound last stored (an end not known: NO_TIME)."""
    begin = pc.coalesce(annotations.column("begin_at"), annotations.column("computed_begin_at"))
    end = pc.coalesce(annotations.column("end_at"), annotations.column("computed_end_at"))
    return time_us(begin, null_as=NO_TIME), time_us(end, null_as=NO_TIME)


def outside_computed(
    computed_ids: pa.ChunkedArray | pa.Array, annotations: pa.Table, start_us: int, end_us: int
) -> pa.Table:
    """The annotations of computed spans that are not among `computed_ids` (the read's own
    days) whose effective bounds meet [start, end): a correction moved their span into the
    range from a day the read did not cover (or the span is no longer computed: detached)."""
    missing = pc.invert(pc.is_in(annotations.column("span_id"), value_set=computed_ids))
    candidates = annotations.filter(
        pc.and_(missing, pc.equal(annotations.column("origin"), "computed"))
    )
    begin, end = effective_bounds(candidates)
    return candidates.filter(pa.array((begin < end_us) & (end > start_us)))


def merge_annotations(
    computed: pa.Table,
    annotations: pa.Table,
    start_us: int,
    end_us: int,
    include_hidden: bool,
) -> pa.Table:
    """The spans answer over [start, end), newest first (ANNOTATED_SPAN_LIST, marked merged).

    `computed` holds the computed spans of the read's days unclipped to the range (SPAN_LIST:
    end_at the run's end as far as read, raw_end_at null where not known); `annotations` the
    annotations of the tag (ANNOTATION_COLUMNS). A computed span's annotation applies where
    their ids meet; a person's span is a row of its own (value None, its bounds raw); an
    annotation whose span is not in `computed` (detached) is left out.

    Rows are the computed spans, then people's spans; each annotation is written into the
    rows it applies to by index, so the work per computed span is a few numpy operations, and
    the Arrow columns are gathered once at the end."""
    is_user = pc.equal(annotations.column("origin"), "user").to_numpy(zero_copy_only=False)
    # Per annotation, the computed row of its span (-1: none; a person's id is never computed).
    at_all = pc.fill_null(
        pc.index_in(annotations.column("span_id"), value_set=computed.column("id")), -1
    ).to_numpy(zero_copy_only=False)
    users = np.flatnonzero(is_user)
    applied = np.flatnonzero(~is_user & (at_all >= 0))
    at = at_all[applied]
    rows, count = computed.num_rows, len(users)
    # Per answer row, its annotation's row in `annotations` (-1: none).
    annotation_of = np.full(rows + count, -1, dtype=np.int64)
    annotation_of[at] = applied
    annotation_of[rows:] = users

    own_begin, own_end = effective_bounds(annotations)
    raw_begin = np.concatenate([time_us(computed.column("raw_begin_at")), own_begin[users]])
    raw_end = time_us(computed.column("raw_end_at"), null_as=NO_TIME)
    # A computed run's end is not known where it is not before the range end (DESIGN §2).
    raw_end = np.concatenate([np.where(raw_end >= end_us, NO_TIME, raw_end), own_end[users]])
    begin = raw_begin.copy()
    end = np.concatenate([time_us(computed.column("end_at")), own_end[users]])
    fix_begin = time_us(annotations.column("begin_at"), null_as=NO_TIME)[applied]
    fix_end = time_us(annotations.column("end_at"), null_as=NO_TIME)[applied]
    begin[at] = np.where(fix_begin != NO_TIME, fix_begin, begin[at])
    end[at] = np.where(fix_end != NO_TIME, fix_end, end[at])
    corrected = np.zeros(rows + count, dtype=bool)
    corrected[at] = (fix_begin != NO_TIME) | (fix_end != NO_TIME)

    keep = (begin < end_us) & (end > start_us)
    if not include_hidden:
        hidden = annotations.column("hidden").to_numpy(zero_copy_only=False)
        annotated = annotation_of >= 0
        keep[annotated] &= ~hidden[annotation_of[annotated]]
    # Newest first by effective begin; stable, so spans nobody corrected keep the computed order.
    order = np.flatnonzero(keep)
    if np.any(np.diff(begin[order]) > 0):  # no correction of a begin reordered anything
        order = order[np.argsort(-begin[order], kind="stable")]
    spans = computed.select(_OWN)
    if count:
        own = pa.Table.from_arrays(
            [
                annotations.column("span_id").take(users),
                annotations.column("tag_name").take(users),
                pa.nulls(count, pa.float64()),
                pa.nulls(count, pa.string()),
            ],
            names=_OWN,
        )
        spans = pa.concat_tables([spans, own])
    spans = spans.take(pa.array(order))
    annotation = annotation_of[order]
    notes = annotations.select(_CARRIED).take(pa.array(annotation, mask=annotation < 0))
    raw_begin, raw_end, shown = raw_begin[order], raw_end[order], corrected[order]
    arrays = [
        *spans.columns,
        us_to_time(np.maximum(begin[order], start_us)),
        us_to_time(np.minimum(end[order], end_us)),
        us_to_time(raw_begin),
        us_to_time(raw_end, null_mask=raw_end == NO_TIME),
        *notes.columns,
        # The computed bounds, shown where a bound was corrected.
        us_to_time(raw_begin, null_mask=~shown),
        us_to_time(raw_end, null_mask=~shown | (raw_end == NO_TIME)),
    ]
    return pa.Table.from_arrays(arrays, schema=_MERGED)


def annotation_spans(records: pa.Table, start_us: int | None, end_us: int | None) -> pa.Table:
    """Annotations as spans (ANNOTATED_SPAN_LIST), from their records alone, newest first:
    value None (the datasets are not read), begin_at / end_at the effective bounds clipped to
    [start, end) when given (an end not known and no range: null), raw bounds the computed
    ones last stored (a person's span: its own)."""
    begin, end = effective_bounds(records)
    is_user = pc.equal(records.column("origin"), "user").to_numpy(zero_copy_only=False)
    raw_begin = np.where(
        is_user, begin, time_us(records.column("computed_begin_at"), null_as=NO_TIME)
    )
    raw_end = np.where(is_user, end, time_us(records.column("computed_end_at"), null_as=NO_TIME))
    corrected = ~is_user & (
        records.column("begin_at").is_valid().to_numpy(zero_copy_only=False)
        | records.column("end_at").is_valid().to_numpy(zero_copy_only=False)
    )
    if start_us is not None and end_us is not None:
        keep = (begin < end_us) & (end > start_us)
        begin, end = np.maximum(begin, start_us), np.minimum(end, end_us)
    else:
        keep = np.ones(records.num_rows, dtype=bool)
    order = np.flatnonzero(keep)
    order = order[np.argsort(-begin[order], kind="stable")]
    picked = pa.array(order)
    rows = len(order)
    raw_end = raw_end[order]
    shown_corrected = corrected[order]
    arrays = [
        records.column("span_id").take(picked),
        records.column("tag_name").take(picked),
        pa.nulls(rows, pa.float64()),
        pa.nulls(rows, pa.string()),
        us_to_time(begin[order]),
        us_to_time(end[order], null_mask=end[order] == NO_TIME),
        us_to_time(raw_begin[order]),
        us_to_time(raw_end, null_mask=raw_end == NO_TIME),
        *(records.column(name).take(picked) for name in _CARRIED),
        us_to_time(raw_begin[order], null_mask=~shown_corrected),
        us_to_time(raw_end, null_mask=~shown_corrected | (raw_end == NO_TIME)),
    ]
    return pa.Table.from_arrays(arrays, schema=_MERGED)
