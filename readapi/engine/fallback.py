"""Day products computed from the source database for days that are not materialised, with
exactly the code the assets run: the day's raw rows and raw carry-in from source/, resolved by
transforms.transitions, then spans and samples (1m rolled up to 1h and 1d, as the assets do)
from transforms. Answers therefore agree with materialised days at every boundary."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from tagflow.schemas.arrow import CARRY_IN, RAW_ROWS
from tagflow.source.connection import answer_within, connect
from tagflow.source.extract import read_carry_in, stream_day_rows
from tagflow.time_range import day_bounds
from tagflow.transforms.rollup import rollup
from tagflow.transforms.samples import samples
from tagflow.transforms.spans import spans_for_day
from tagflow.transforms.transitions import carry_in_for_day, resolve_rows

_TagKey = frozenset[str] | None
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
        self._days: dict[tuple[date, _TagKey], tuple[pa.Table, pa.Table, pa.Table]] = {}
        self._samples: dict[tuple[date, _TagKey], dict[str, pa.Table]] = {}

    def _tags_of(self, tag_names: Collection[str] | None) -> pa.Table:
        if tag_names is None:
            return self._tags
        wanted = pa.array(sorted(set(tag_names)), type=pa.string())
        return self._tags.filter(pc.is_in(self._tags.column("tag_name"), value_set=wanted))

    def _day(self, day: date, tag_names: Collection[str] | None) -> tuple[pa.Table, ...]:
        """(tags, transitions, carry_in) of `day` restricted to `tag_names`."""
        key = (day, None if tag_names is None else frozenset(tag_names))
        if key not in self._days:
            tags = self._tags_of(tag_names)
            day_start, day_end = day_bounds(day)
            tag_ids = None if tag_names is None else tags.column("tag_id").to_pylist()
            if tag_ids == []:
                # None of the asked tags exists in the source: nothing to ask it.
                transitions, carry_in = resolve_rows(RAW_ROWS.empty_table(), tags)[0], None
            else:
                # One psycopg session for rows and carry-in: its socket is ours to cut
                # at the deadline (ADBC's is not).
                with (
                    connect(self._url) as conn,
                    answer_within(conn, self._timeout_s, "reading the source"),
                ):
                    batches = stream_day_rows(
                        conn, self._tenant, day_start, day_end, tag_ids=tag_ids
                    )
                    raw_rows = pa.Table.from_batches(list(batches), schema=RAW_ROWS)
                    raw_carry_in = read_carry_in(conn, self._tenant, day_start)
                transitions, _ = resolve_rows(raw_rows, tags)
                carry_in = carry_in_for_day(raw_carry_in, tags, day_start)
            if carry_in is None:
                carry_in = CARRY_IN.empty_table()
            self._days[key] = (tags, transitions, carry_in)
        return self._days[key]

    def transitions(
        self, day: date, tag_names: Collection[str] | None, columns: Sequence[str] | None = None
    ) -> pa.Table:
        table = self._day(day, tag_names)[1]
        return table if columns is None else table.select(list(columns))

    def carry_in(self, day: date, tag_names: Collection[str] | None) -> pa.Table:
        return self._day(day, tag_names)[2]

    def spans(self, day: date, tag_names: Collection[str] | None) -> pa.Table:
        tags, transitions, carry_in = self._day(day, tag_names)
        day_start, day_end = day_bounds(day)
        return spans_for_day(transitions, carry_in, day_start, day_end, tags, self._tenant)

    def samples(
        self,
        width_name: str,
        string: bool,
        day: date,
        tag_names: Collection[str] | None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        key = (day, None if tag_names is None else frozenset(tag_names))
        if key not in self._samples:
            tags, transitions, carry_in = self._day(day, tag_names)
            day_start, day_end = day_bounds(day)
            minute = samples(transitions, carry_in, day_start, day_end, timedelta(minutes=1), tags)
            # The same chain as the assets (1m → 1h → 1d), so floats match stored days bit
            # for bit rather than only up to rounding.
            numeric_1h = rollup(minute.numeric, timedelta(hours=1))
            string_1h = rollup(minute.string, timedelta(hours=1))
            self._samples[key] = {
                "samples_1m": minute.numeric,
                "samples_str_1m": minute.string,
                "samples_1h": numeric_1h,
                "samples_str_1h": string_1h,
                "samples_1d": rollup(numeric_1h, timedelta(days=1)),
                "samples_str_1d": rollup(string_1h, timedelta(days=1)),
            }
        name = f"samples_str_{width_name}" if string else f"samples_{width_name}"
        table = self._samples[key][name]
        return table if columns is None else table.select(list(columns))
