"""Day products computed from the source database for days that are not materialised, by the
day step the assets run (daystep.run_day): the day's raw rows and raw carry-in from source/,
the day's compute chain per chunk, and for derived tags their inputs' rows, carry-in and the
walk back for the run held at 00:00. Answers therefore agree with materialised days at every
boundary, bit for bit.

The engine imports this module only when a source is configured: a client reading a store alone
never loads the database drivers or the derived-tag definitions (YAML)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from tagflow.daystep.run import run_day
from tagflow.errors import CorruptPartition, MissingPartition
from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.readapi.engine.config import ReadConfig
from tagflow.readapi.engine.coverage import FreshCache
from tagflow.readapi.engine.day_products import DayProducts
from tagflow.schemas.arrow import RAW_CARRY_IN, RAW_ROWS, TAGS_DATASET, conform
from tagflow.source.connection import answer_within
from tagflow.source.day_stream import RawChunk
from tagflow.source.derived_history import SourceHistory
from tagflow.source.embedded import resolve_source_url
from tagflow.source.engines import source_session
from tagflow.source.extract import read_carry_in, read_tags, stream_day_rows
from tagflow.time_range import day_bounds
from tagflow.transforms.derived.day import DerivedPlan
from tagflow.transforms.derived.definitions import (
    TenantDerivedTags,
    deployment_definitions,
    tenant_definitions,
)
from tagflow.transforms.tag_order import TagOrder

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


class _Collected:
    """The day step's sink for a read: each dataset's tables kept in memory, then each dataset
    sorted by tag name as the files are (stable: each tag's rows keep their order), holding
    only the derived tags asked for (a derived tag's closure computes the ones it reads)."""

    def __init__(self) -> None:
        self._tables: dict[str, list[pa.Table]] = {}

    def add(self, tables: dict[str, pa.Table]) -> None:
        for name, table in tables.items():
            self._tables.setdefault(name, []).append(table)

    def tables(self, unwanted_ids: set[int]) -> dict[str, pa.Table]:
        unwanted = pa.array(sorted(unwanted_ids), pa.int32())
        out = {}
        for name, parts in self._tables.items():
            both = pa.concat_tables([part.cast(parts[0].schema) for part in parts])
            if len(unwanted):
                both = both.filter(pc.invert(pc.is_in(both.column("tag_id"), value_set=unwanted)))
            order = pc.sort_indices(both, sort_keys=[("tag_name", "ascending")])
            out[name] = both.take(order)
        return out


class SourceFallback:
    """The source database behind a read engine: each tenant's tag list (cached, with the rows
    of its derived tags), its derived tags, and day products for days not materialised. The
    derived tags are the deployment's file when configured (checked when the engine is
    built), else those the stored snapshot was materialised with (DESIGN §8)."""

    def __init__(self, config: ReadConfig, store: DatasetStore) -> None:
        assert config.source_url is not None
        self.url = resolve_source_url(config.source_url)
        self._timeout_s = config.source_timeout_s
        self._store = store
        self._deployment = (
            deployment_definitions(config.derived_tags) if config.derived_tags else None
        )
        self._tags: FreshCache[pa.Table] = FreshCache(config.cache_ttl_s)

    def tags(self, tenant: str) -> pa.Table:
        """The source's tags of `tenant` sorted by name (UnknownTenant if the source has no
        such tenant, SourceUnavailable if it cannot be reached)."""

        def load() -> pa.Table:
            with (
                source_session(self.url, tenant=tenant, within_s=self._timeout_s) as conn,
                answer_within(conn, self._timeout_s, "reading the tag list"),
            ):
                tags = read_tags(conn, tenant).sort_by("tag_name")
            return with_derived_rows(tags, self.definitions(tenant))

        return self._tags.get(tenant, load)

    def definitions(self, tenant: str) -> TenantDerivedTags:
        """The tenant's derived tags: the deployment's, else those of the stored snapshot."""
        if self._deployment is not None:
            return self._deployment.for_tenant(tenant)
        try:
            stored = self._store.read("tags", tenant)
        except (MissingPartition, CorruptPartition):
            return TenantDerivedTags(tenant, ())
        return definitions_of_rows(tenant, stored)

    def products(self, tenant: str, tags: pa.Table) -> SourceProducts:
        """Day products of `tenant` from the source for one read, named by `tags`."""
        return SourceProducts(self.url, tenant, tags, self._timeout_s, self._derived(tenant))

    def _derived(self, tenant: str) -> DerivedSource | None:
        """What computing the tenant's derived tags needs; None without any."""
        definitions = self.definitions(tenant)
        if not len(definitions):
            return None
        tags = self.tags(tenant)
        source_tags = tags.filter(pc.invert(pc.fill_null(tags.column("derived"), False)))
        return DerivedSource(definitions, source_tags)

    def invalidate(self, tenant: str) -> None:
        self._tags.invalidate(tenant)


def with_derived_rows(tags: pa.Table, definitions: TenantDerivedTags) -> pa.Table:
    """The source's tag list (TAGS) as the tags dataset holds it (TAGS_DATASET), with the rows
    of the tenant's derived tags, sorted by name."""
    table = conform(tags, TAGS_DATASET)
    if not len(definitions):
        return table
    derived = DerivedPlan.of(definitions, tags).tags
    return pa.concat_tables([table, derived]).sort_by("tag_name")


def definitions_of_rows(tenant: str, tags: pa.Table) -> TenantDerivedTags:
    """The derived tags a stored tags list was materialised with, from their rows."""
    rows = tags.filter(pc.fill_null(tags.column("derived"), False)).to_pylist()
    entries = [
        {"name": r["tag_name"], "expression": r["expression"], "description": r["description"]}
        for r in rows
    ]
    return tenant_definitions(tenant, entries)


class SourceProducts(DayProducts):
    """One tenant's day products from the source, memoised for the life of one read (a read
    may ask for a day's transitions and its carry-in separately; the source is asked once)."""

    def __init__(
        self,
        source_url: str,
        tenant: str,
        tags: pa.Table,
        timeout_s: float,
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
        key = (day, None if tags is None else frozenset(tags.column("tag_id").to_pylist()))
        if key not in self._days:
            self._days[key] = self._compute(day, self._tags if tags is None else tags, tags)
        return self._days[key]

    def _compute(self, day: date, tags: pa.Table, asked: pa.Table | None) -> dict[str, pa.Table]:
        source_tags, derived_names = _without_derived(tags)
        plan = self._plan(derived_names)
        # None reads every tag; [] is none of the asked tags in the source.
        tag_ids = None if asked is None else source_tags.column("tag_id").to_pylist()
        day_start, day_end = day_bounds(day)
        sink = _Collected()
        # One pooled psycopg session for rows, carry-in and the walk back, the tenant's tables
        # checked first: its socket is ours to cut at the deadline (ADBC's is not).
        with (
            source_session(self._url, tenant=self._tenant, within_s=self._timeout_s) as conn,
            answer_within(conn, self._timeout_s, "reading the source"),
        ):
            chunks = []
            carry_ids: list[int] | None = None
            if plan is not None:
                inputs = plan.input_ids.tolist()
                chunks.append(RawChunk(plan.input_ids, self._rows(conn, day, inputs), True))
                carry_ids = None if tag_ids is None else sorted({*tag_ids, *inputs})
            elif tag_ids is not None:
                carry_ids = tag_ids
            ids = source_tags.column("tag_id").to_numpy(zero_copy_only=False)
            chunks.append(RawChunk(ids, self._rows(conn, day, tag_ids)))
            raw_carry_in = (
                read_carry_in(conn, self._tenant, day_start, carry_ids)
                if carry_ids != []
                else RAW_CARRY_IN.empty_table()
            )
            run_day(
                self._tenant, day, TagOrder.of(source_tags), raw_carry_in, iter(chunks), sink,
                derived=plan, history=_opened(conn, self._tenant),
            )  # fmt: skip
        unwanted = set() if plan is None else set(plan.tags.column("tag_id").to_pylist())
        wanted = set(tags.column("tag_id").to_pylist())
        return sink.tables(unwanted - wanted)

    def _plan(self, derived_names: list[str]) -> DerivedPlan | None:
        """The plan of the derived tags asked for and those they read (their closure)."""
        if not derived_names or self._derived is None:
            return None
        definitions = self._derived.definitions.closure(derived_names)
        return DerivedPlan.of(definitions, self._derived.source_tags)

    def _rows(self, conn: psycopg.Connection, day: date, tag_ids: list[int] | None) -> pa.Table:
        if tag_ids == []:
            return RAW_ROWS.empty_table()
        day_start, day_end = day_bounds(day)
        batches = stream_day_rows(conn, self._tenant, day_start, day_end, tag_ids=tag_ids)
        return pa.Table.from_batches(list(batches), schema=RAW_ROWS)

    def read(
        self, dataset: str, day: date, tags: pa.Table | None, columns: Sequence[str] | None = None
    ) -> pa.Table:
        table = self._day(day, tags)[dataset]
        return table if columns is None else table.select(list(columns))


def _opened(conn: psycopg.Connection, tenant: str):
    @contextmanager
    def opened() -> Iterator[SourceHistory]:
        yield SourceHistory(conn, tenant)

    return opened
