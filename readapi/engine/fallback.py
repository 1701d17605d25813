"""Day products computed from the source database for days that are not materialised, with
exactly the code the assets run: the day's raw rows and raw carry-in from source/, then the
day's compute chain (transforms.day). Answers therefore agree with materialised days at every
boundary, bit for bit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import pyarrow as pa

from tagflow.schemas.arrow import RAW_CARRY_IN, RAW_ROWS
from tagflow.schemas.registry import samples_name
from tagflow.source.connection import answer_within, connect
from tagflow.source.extract import read_carry_in, stream_day_rows
from tagflow.time_range import day_bounds
from tagflow.transforms.day import compute_day

_TagKey = frozenset[int] | None
# Wall-time bound of one source read (a day's rows and carry-in, or the tag list): a source
# that goes silent mid-query must fail the read, not hold a caller or a service thread.
DEFAULT_SOURCE_TIMEOUT_S = 60.0


class SourceProducts:
    """One tenant's day products from the source, memoised for the life of one read (a read
    may ask for a day's transitions and its carry-in separately; the source is asked once)."""

    def __init__(
        self,
        source_url: str,
        tenant: str,
        tags: pa.Table,
        timeout_s: float = DEFAULT_SOURCE_TIMEOUT_S,
    ) -> None:
        self._url = source_url
        self._timeout_s = timeout_s
        self._tenant = tenant
        self._tags = tags
        self._days: dict[tuple[date, _TagKey], dict[str, pa.Table]] = {}

    def _day(self, day: date, tags: pa.Table | None) -> dict[str, pa.Table]:
        """Every dated dataset of `day` for `tags` (all if None), from the source, once per
        read."""
        tag_ids = None if tags is None else tags.column("tag_id").to_pylist()
        key = (day, None if tag_ids is None else frozenset(tag_ids))
        if key not in self._days:
            tags = self._tags if tags is None else tags
            day_start, day_end = day_bounds(day)
            raw_rows, raw_carry_in = RAW_ROWS.empty_table(), RAW_CARRY_IN.empty_table()
            if tag_ids != []:  # [] is none of the asked tags in the source: nothing to ask
                # One psycopg session for rows and carry-in: its socket is ours to cut at the
                # deadline (ADBC's is not).
                with (
                    connect(self._url) as conn,
                    answer_within(conn, self._timeout_s, "reading the source"),
                ):
                    batches = stream_day_rows(
                        conn, self._tenant, day_start, day_end, tag_ids=tag_ids
                    )
                    raw_rows = pa.Table.from_batches(list(batches), schema=RAW_ROWS)
                    raw_carry_in = read_carry_in(conn, self._tenant, day_start)
            result = compute_day(raw_rows, raw_carry_in, tags, day_start, day_end, self._tenant)
            self._days[key] = result.tables
        return self._days[key]

    def _table(
        self,
        dataset: str,
        day: date,
        tags: pa.Table | None,
        columns: Sequence[str] | None,
    ) -> pa.Table:
        table = self._day(day, tags)[dataset]
        return table if columns is None else table.select(list(columns))

    def transitions(
        self, day: date, tags: pa.Table | None, columns: Sequence[str] | None = None
    ) -> pa.Table:
        return self._table("transitions", day, tags, columns)

    def carry_in(self, day: date, tags: pa.Table | None) -> pa.Table:
        return self._table("carry_in", day, tags, None)

    def spans(self, day: date, tags: pa.Table | None) -> pa.Table:
        return self._table("spans", day, tags, None)

    def samples(
        self,
        width_name: str,
        string: bool,
        day: date,
        tags: pa.Table | None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        return self._table(samples_name(width_name, string), day, tags, columns)
