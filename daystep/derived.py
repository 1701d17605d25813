"""The day step's share of derived tags (DESIGN §8): loaded from the deployment's definitions
file, computed once the day's scan has kept their inputs' rows (before the first chunk is
written), and handed out between the chunks of source tags they sort among, so every file stays
sorted by tag name with no second pass over the source and no chunk held back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime

import numpy as np
import pyarrow as pa

from tagflow.settings import Settings
from tagflow.source.derived_history import SourceHistory
from tagflow.transforms.derived.day import DerivedDay, DerivedPlan, compute_derived_day
from tagflow.transforms.derived.definitions import (
    DerivedTagDefinitions,
    TenantDerivedTags,
)
from tagflow.transforms.derived.definitions import deployment_definitions as definitions_in_file

# Opens the tenant's history for the walk back to the run held at 00:00 (a source session).
HistoryOpener = Callable[[], AbstractContextManager[SourceHistory]]


def deployment_definitions(settings: Settings) -> DerivedTagDefinitions:
    """The derived tags of TAGFLOW_DERIVED_TAGS, checked now (InvalidDerivedTag: the code
    location shows the error when it loads); none when the setting is unset."""
    return definitions_in_file(settings.derived_tags)


def derived_plan(definitions: TenantDerivedTags, tags: pa.Table) -> DerivedPlan | None:
    """The plan of the tenant's derived tags over its source tags (TAGS); None without any.
    InvalidDerivedTag when one reads a tag the tenant lacks or takes a source tag's name."""
    return DerivedPlan.of(definitions, tags) if len(definitions) else None


class DerivedInDay:
    """One tenant-day's derived tags, as the day step streams its chunks."""

    def __init__(
        self,
        plan: DerivedPlan,
        history: HistoryOpener,
        tenant: str,
        day_start: datetime,
        day_end: datetime,
        raw_carry_in: pa.Table,
    ) -> None:
        self.plan = plan
        self._history, self._tenant = history, tenant
        self._day_start, self._day_end = day_start, day_end
        self._raw_carry_in = raw_carry_in
        self._groups: list[tuple[int, dict[str, pa.Table]]] = []
        self.day: DerivedDay | None = None

    def compute(self, input_rows: pa.Table) -> None:
        """Compute the day from its inputs' raw rows (the walk back reads their history), and
        split it into the groups handed out between chunks."""
        with self._history() as history:
            self.day = compute_derived_day(
                self.plan,
                input_rows,
                self._raw_carry_in,
                self._day_start,
                self._day_end,
                self._tenant,
                history,
            )
        self._groups = _groups(self.plan, self.day.tables)

    def due(self, rank: int) -> Iterator[dict[str, pa.Table]]:
        """The tables of the derived tags sorting before source rank `rank` not yet handed
        out (every one left, given the number of source tags)."""
        while self._groups and self._groups[0][0] <= rank:
            yield self._groups.pop(0)[1]

    @property
    def version(self) -> str:
        return self.day.version if self.day is not None else ""

    @property
    def transitions(self) -> int:
        return self.day.tables["transitions"].num_rows if self.day is not None else 0


def _groups(
    plan: DerivedPlan, tables: dict[str, pa.Table]
) -> list[tuple[int, dict[str, pa.Table]]]:
    """The day's tables cut into groups of derived tags that sort between the same two source
    tags, with the source rank each group comes before; rows are in derived rank order."""
    positions = np.array(plan.positions(), dtype=np.int64)
    if not len(positions):
        return []
    starts = np.flatnonzero(np.r_[True, positions[1:] != positions[:-1]])
    groups = []
    for k, first_rank in enumerate(starts):
        last_rank = starts[k + 1] if k + 1 < len(starts) else len(positions)
        group = {}
        for name, table in tables.items():
            rank = plan.order.ranks_of(table.column("tag_id").to_numpy(zero_copy_only=False))
            bounds = np.array([first_rank, last_rank], dtype=np.int64)
            lo, hi = (int(at) for at in np.searchsorted(rank, bounds))
            group[name] = table.slice(lo, hi - lo)
        groups.append((int(positions[first_rank]), group))
    return groups
