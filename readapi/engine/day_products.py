"""What a read takes of one day: the transitions, carry-in, spans and samples of some tags,
each one dated dataset of the day by name, from the stored files (stored.StoredProducts) or
computed from the source (fallback.SourceProducts)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import date

import pyarrow as pa

from tagflow.schemas.registry import samples_name


class DayProducts(ABC):
    """A day's products of some tags: `tags` holds their TAGS rows (None = every tag)."""

    @abstractmethod
    def read(
        self, dataset: str, day: date, tags: pa.Table | None, columns: Sequence[str] | None = None
    ) -> pa.Table:
        """`dataset` of `day` for `tags`, `columns` only (None = every column)."""

    def transitions(
        self, day: date, tags: pa.Table | None, columns: Sequence[str] | None = None
    ) -> pa.Table:
        return self.read("transitions", day, tags, columns)

    def carry_in(self, day: date, tags: pa.Table | None) -> pa.Table:
        return self.read("carry_in", day, tags)

    def spans(self, day: date, tags: pa.Table | None) -> pa.Table:
        return self.read("spans", day, tags)

    def samples(
        self,
        width_name: str,
        string: bool,
        day: date,
        tags: pa.Table | None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        return self.read(samples_name(width_name, string), day, tags, columns)
