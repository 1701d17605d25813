"""Day products read from the materialised datasets: a day's transitions, carry-in, spans and
samples of some tags. Reads go through DatasetStore (the only code that knows paths), find the
tags by id in each file's tag directory, and name them as the tenant's catalogue does now: a
renamed tag's whole history answers to its current name."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import pyarrow as pa

from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.readapi.engine.limits import RowBudget
from tagflow.schemas.registry import DATASETS, samples_name


class StoredProducts:
    """One tenant's day partitions for one read, named by `catalogue` (TAGS rows), within the
    read's row budget. Every method takes `tags`, the TAGS rows of the tags to read (None =
    every tag of the catalogue)."""

    def __init__(
        self, store: DatasetStore, tenant: str, catalogue: pa.Table, budget: RowBudget
    ) -> None:
        self._store = store
        self._tenant = tenant
        self._budget = budget
        ids = catalogue.column("tag_id").to_numpy()
        order = np.argsort(ids, kind="stable")
        self._ids = ids[order]
        self._names = catalogue.column("tag_name").take(pa.array(order))

    def _read(
        self,
        dataset: str,
        day: date,
        tags: pa.Table | None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        names = list(columns) if columns is not None else DATASETS[dataset].schema.names
        # tag_id costs nothing to read (the tag directory has it); stored names may be stale.
        read = [name for name in names if name not in ("tag_id", "tag_name")]
        ids = None if tags is None else tags.column("tag_id").to_numpy()
        table = self._store.read_tag_rows(
            dataset,
            self._tenant,
            day,
            ids,
            [*read, "tag_id"],
            lambda rows: self._budget.take(rows, dataset),
        )
        found = table.column("tag_id").to_numpy()
        at = np.minimum(np.searchsorted(self._ids, found), max(len(self._ids) - 1, 0))
        known = self._ids[at] == found if len(self._ids) else np.zeros(len(found), bool)
        if not known.all():
            # A tag the catalogue no longer lists (deleted from the source) is not answered.
            table, at = table.filter(pa.array(known)), at[known]
        if "tag_name" in names:
            table = table.append_column("tag_name", self._names.take(pa.array(at)))
        return table.select(names)

    def transitions(
        self, day: date, tags: pa.Table | None, columns: Sequence[str] | None = None
    ) -> pa.Table:
        return self._read("transitions", day, tags, columns)

    def carry_in(self, day: date, tags: pa.Table | None) -> pa.Table:
        return self._read("carry_in", day, tags)

    def spans(self, day: date, tags: pa.Table | None) -> pa.Table:
        return self._read("spans", day, tags)

    def samples(
        self,
        width_name: str,
        string: bool,
        day: date,
        tags: pa.Table | None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        return self._read(samples_name(width_name, string), day, tags, columns)
