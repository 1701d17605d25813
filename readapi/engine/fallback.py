"""Day products computed from the source database for days that are not materialised, with
exactly the code the assets run: the day's raw rows and raw carry-in from source/, then the
day's compute chain (transforms.day), and for derived tags their inputs' rows and carry-in, then
the derived day (transforms.derived.day, with the same walk back for the run held at 00:00).
Answers therefore agree with materialised days at every boundary, bit for bit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from tagflow.schemas.arrow import RAW_CARRY_IN, RAW_ROWS
from tagflow.schemas.registry import samples_name
from tagflow.source.connection import answer_within
from tagflow.source.derived_history import SourceHistory
from tagflow.source.engines import source_session
from tagflow.source.extract import read_carry_in, stream_day_rows
from tagflow.time_range import day_bounds
from tagflow.transforms.day import compute_day
from tagflow.transforms.derived.day import DerivedPlan, compute_derived_day
from tagflow.transforms.derived.definitions import TenantDerivedTags

_TagKey = frozenset[int] | None


@dataclass(frozen=True)
class DerivedSource:
    """What the fallback needs to compute a tenant's derived tags (DESIGN §8): their
    definitions and the tenant's source tags (TAGS, for their inputs' ids and deaths)."""

    definitions: TenantDerivedTags
    source_tags: pa.Table


def _without_derived(tags: pa.Table) -> tuple[pa.Table, list[str]]:
    """The source tags of `tags`, and the names of its derived tags."""
    if "derived" not in tags.column_names:
        return tags, []
    derived = pc.fill_null(tags.column("derived"), False)
    names = tags.filter(derived).column("tag_name").to_pylist()
    return (tags.filter(pc.invert(derived)) if names else tags), names


def _merged(tables: dict[str, pa.Table], more: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """Each dataset's rows of both, sorted by tag name as the datasets are (stable: each
    tag's rows keep their order)."""
    merged = {}
    for name, table in tables.items():
        both = pa.concat_tables([table, more[name].cast(table.schema)])
        order = pc.sort_indices(both, sort_keys=[("tag_name", "ascending")])
        merged[name] = both.take(order)
    return merged


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
        derived: DerivedSource | None = None,
    ) -> None:
        self._url = source_url
        self._timeout_s = timeout_s
        self._tenant = tenant
        self._tags = tags
        self._derived = derived
        self._days: dict[tuple[date, _TagKey], dict[str, pa.Table]] = {}

    def _day(self, day: date, tags: pa.Table | None) -> dict[str, pa.Table]:
        """Every dated dataset of `day` for `tags` (all if None), from the source, once per
        read."""
        tag_ids = None if tags is None else tags.column("tag_id").to_pylist()
        key = (day, None if tag_ids is None else frozenset(tag_ids))
        if key not in self._days:
            tags = self._tags if tags is None else tags
            tags, derived_names = _without_derived(tags)
            if tag_ids is not None:
                tag_ids = tags.column("tag_id").to_pylist()
            day_start, day_end = day_bounds(day)
            raw_rows, raw_carry_in = RAW_ROWS.empty_table(), RAW_CARRY_IN.empty_table()
            if tag_ids != []:  # [] is none of the asked tags in the source: nothing to ask
                # One pooled psycopg session for rows and carry-in, the tenant's tables checked
                # first: its socket is ours to cut at the deadline (ADBC's is not).
                with (
                    source_session(
                        self._url, tenant=self._tenant, within_s=self._timeout_s
                    ) as conn,
                    answer_within(conn, self._timeout_s, "reading the source"),
                ):
                    batches = stream_day_rows(
                        conn, self._tenant, day_start, day_end, tag_ids=tag_ids
                    )
                    raw_rows = pa.Table.from_batches(list(batches), schema=RAW_ROWS)
                    raw_carry_in = read_carry_in(conn, self._tenant, day_start)
            result = compute_day(raw_rows, raw_carry_in, tags, day_start, day_end, self._tenant)
            tables = result.tables
            if derived_names and self._derived is not None:
                tables = _merged(tables, self._derived_day(derived_names, day))
            self._days[key] = tables
        return self._days[key]

    def _derived_day(self, names: list[str], day: date) -> dict[str, pa.Table]:
        """Every dated dataset of `day` for the derived tags `names`, from their inputs."""
        assert self._derived is not None
        definitions = self._derived.definitions.closure(names)
        plan = DerivedPlan.of(definitions, self._derived.source_tags)
        day_start, day_end = day_bounds(day)
        ids = plan.input_ids.tolist()
        with (
            source_session(self._url, tenant=self._tenant, within_s=self._timeout_s) as conn,
            answer_within(conn, self._timeout_s, "reading the source"),
        ):
            batches = stream_day_rows(conn, self._tenant, day_start, day_end, tag_ids=ids)
            rows = pa.Table.from_batches(list(batches), schema=RAW_ROWS)
            raw_carry_in = read_carry_in(conn, self._tenant, day_start, ids)
            result = compute_derived_day(
                plan,
                rows,
                raw_carry_in,
                day_start,
                day_end,
                self._tenant,
                SourceHistory(conn, self._tenant),
            )
        wanted = pa.array(names, pa.string())
        return {
            name: table.filter(pc.is_in(table.column("tag_name"), value_set=wanted))
            for name, table in result.tables.items()
        }

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
