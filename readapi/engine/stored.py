"""Day products read from the materialised datasets: a day's transitions, carry-in, spans and
samples of some tags. Reads go through DatasetStore (the only code that knows paths) and push
the tag filter down to Parquet row-group statistics."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date

import pyarrow as pa

from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.schemas.registry import samples_name


class StoredProducts:
    """One tenant's day partitions. Every method takes `tag_names` (None = all tags)."""

    def __init__(self, store: DatasetStore, tenant: str) -> None:
        self._store = store
        self._tenant = tenant

    def _read(
        self,
        dataset: str,
        day: date,
        tag_names: Collection[str] | None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        return self._store.read_tag_rows(dataset, self._tenant, day, tag_names, columns)

    def transitions(
        self, day: date, tag_names: Collection[str] | None, columns: Sequence[str] | None = None
    ) -> pa.Table:
        return self._read("transitions", day, tag_names, columns)

    def carry_in(self, day: date, tag_names: Collection[str] | None) -> pa.Table:
        return self._read("carry_in", day, tag_names)

    def spans(self, day: date, tag_names: Collection[str] | None) -> pa.Table:
        return self._read("spans", day, tag_names)

    def samples(
        self,
        width_name: str,
        string: bool,
        day: date,
        tag_names: Collection[str] | None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        return self._read(samples_name(width_name, string), day, tag_names, columns)
