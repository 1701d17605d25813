"""How large one answer may be. The service answers many callers from one process: a read
that would build more than this is refused up front, with what to narrow, instead of filling
the process's memory."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from tagflow.errors import AnswerTooLarge
from tagflow.settings import Settings


@dataclass(frozen=True)
class AnswerLimits:
    # Buckets × tags of one bucketed answer. Building one takes 300–650 bytes a cell at its
    # peak (pieces split at bucket edges, every statistic, the wide table, its encoding), so the
    # default keeps a request under issue 17's 512 MiB (docs/read-api.md has the measurements).
    max_cells: int
    # Rows one read decodes from the datasets (transitions, spans, or the finer samples a
    # coarser width is rolled up from): about 150 bytes a row at the peak.
    max_rows: int

    @classmethod
    def from_settings(cls, settings: Settings) -> AnswerLimits:
        return cls(max_cells=settings.max_cells, max_rows=settings.max_rows)

    def require_cells(self, buckets: int, tags: int) -> None:
        cells = buckets * max(tags, 1)
        if cells > self.max_cells:
            raise AnswerTooLarge(
                f"{buckets} buckets × {tags} tags = {cells} cells is more than one answer may "
                f"hold ({self.max_cells}, TAGFLOW_MAX_CELLS): use a wider bucket width, fewer "
                "tags or a shorter range"
            )

    def row_budget(self) -> RowBudget:
        return RowBudget(self.max_rows)


class RowBudget:
    """The rows one read may still decode, shared by the threads reading its days: each file
    asks before decoding (its tag directory says how many rows), so a read too large is
    refused before it holds more than the limit."""

    def __init__(self, max_rows: int) -> None:
        self._max_rows = max_rows
        self._left = max_rows
        self._lock = threading.Lock()

    def take(self, rows: int, dataset: str) -> None:
        with self._lock:
            self._left -= rows
            over = self._left < 0
        if over:
            raise AnswerTooLarge(
                f"the read would decode more rows of {dataset} than one answer may "
                f"({self._max_rows}, TAGFLOW_MAX_ROWS): ask for fewer tags or a shorter range"
            )
