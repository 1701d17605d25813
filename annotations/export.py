"""The analysts' copy of the span annotations (DESIGN §9): a tenant's current records and the
history of every change, written as the `span_annotations` and `span_annotation_history`
datasets through the dataset store, each file published whole. The Dagster asset and
`tagflow annotations export` both call export_annotations, so they write the same files."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa

from tagflow.annotations.store import AnnotationStore
from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.io_managers.partition_writer import StagedPartition
from tagflow.names import validate_tenant_name
from tagflow.schemas.arrow import SPAN_ANNOTATION_HISTORY, SPAN_ANNOTATIONS

RECORDS = "span_annotations"
HISTORY = "span_annotation_history"
_LABELS = SPAN_ANNOTATIONS.field("labels").type


@dataclass(frozen=True)
class AnnotationExport:
    """What one export published, and the high-water mark it is complete up to: the number of
    changes committed before it read them, all in both files (a change made while exporting may
    be too, and moves the mark past this one, so the next export takes it)."""

    records: StagedPartition
    history: StagedPartition
    high_water_mark: int


def export_annotations(
    annotations: AnnotationStore, store: DatasetStore, tenant: str
) -> AnnotationExport:
    """Replace `tenant`'s two annotation datasets with the state database's content now."""
    validate_tenant_name(tenant)
    mark = annotations.high_water_mark(tenant)
    records = records_dataset(annotations.records(tenant))
    history = history_dataset(annotations.history_table(tenant))
    return AnnotationExport(
        records=store.write(RECORDS, tenant, None, records),
        history=store.write(HISTORY, tenant, None, history),
        high_water_mark=mark,
    )


def records_dataset(records: pa.Table) -> pa.Table:
    """The store's records (AnnotationStore.records, ordered by span id) as SPAN_ANNOTATIONS:
    `span_id` named `id` as in `spans`, labels parsed from JSON text into a map."""
    # One json.loads per annotated span: labels are bounded (64 keys) and an export runs per
    # change, not per read.
    labels = pa.array(
        [None if text is None else json.loads(text) for text in records["labels"].to_pylist()],
        _LABELS,
    )
    table = records.set_column(records.schema.get_field_index("labels"), "labels", labels)
    return table.rename_columns(["id" if n == "span_id" else n for n in table.column_names]).select(
        SPAN_ANNOTATIONS.names
    )


def history_dataset(history: pa.Table) -> pa.Table:
    """The store's history (AnnotationStore.history_table, in order) as SPAN_ANNOTATION_HISTORY."""
    renamed = history.rename_columns(["id" if n == "span_id" else n for n in history.column_names])
    return renamed.select(SPAN_ANNOTATION_HISTORY.names).cast(SPAN_ANNOTATION_HISTORY)
