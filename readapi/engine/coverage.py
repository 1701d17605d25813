"""Which tenant-days are materialised, answered from a cached listing instead of a directory
walk per call, and the tenant's tag catalogues (stored snapshot and source), cached alike.

A day counts as materialised when both leaves of the asset graph (`spans` and
`samples_str_1d`, written last by their branches) have its partition: everything upstream of
them was written before. On a local store, cached listings and the stored catalogue are
reused while the store says nothing changed (a folder's mtime, a file's identity: one stat
each), so a day published or rewritten is seen by the next call. Elsewhere (object stores,
the source's tag list) entries live `ttl_s` seconds; until then a freshly materialised day is
answered, correctly, from the source.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterable
from datetime import date
from typing import Generic, TypeVar

import pyarrow as pa

from tagflow.errors import MissingPartition
from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.readapi.engine.fallback import DEFAULT_SOURCE_TIMEOUT_S
from tagflow.source.connection import answer_within, connect
from tagflow.source.extract import read_tags

# The last dataset each branch of the asset graph writes for a day.
COVERAGE_DATASETS = ("spans", "samples_str_1d")
DEFAULT_TTL_S = 30.0

V = TypeVar("V")


class FreshCache(Generic[V]):
    """A small thread-safe map whose entries hold while the version token given with them is
    unchanged; an entry given no token (None) holds for `ttl_s` seconds."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[Hashable, float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, compute: Callable[[], V], version: Hashable = None) -> V:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None:
            held_version, expires, value = entry
            if version is None and expires > now or version is not None and held_version == version:
                return value
        # Computed outside the lock: a slow listing must not block other tenants' readers. The
        # token was read before computing, so a change during it is seen by the next call.
        value = compute()
        with self._lock:
            self._entries[key] = (version, now + self.ttl_s, value)
        return value

    def invalidate(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)


class CoverageIndex:
    """Materialised days per tenant, from the store's partition listing, cached."""

    def __init__(self, store: DatasetStore, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._store = store
        self._days: FreshCache[frozenset[date]] = FreshCache(ttl_s)

    def days(self, tenant: str) -> frozenset[date]:
        versions = [self._store.listing_version(name, tenant) for name in COVERAGE_DATASETS]
        version = None if None in versions else tuple(versions)
        return self._days.get(tenant, lambda: self._list(tenant), version)

    def _list(self, tenant: str) -> frozenset[date]:
        listed = [set(self._store.materialised_days(name, tenant)) for name in COVERAGE_DATASETS]
        return frozenset(set.intersection(*listed))

    def split(self, tenant: str, days: Iterable[date]) -> tuple[list[date], list[date]]:
        """(materialised, missing) of `days`, each in order."""
        have = self.days(tenant)
        wanted = sorted(set(days))
        return [d for d in wanted if d in have], [d for d in wanted if d not in have]

    def invalidate(self, tenant: str) -> None:
        self._days.invalidate(tenant)


class TagCatalogue:
    """The tenant's tags: the stored `tags` snapshot and, when a source is configured, the
    source's tag_names (for days answered from the source and tags created since)."""

    def __init__(
        self,
        store: DatasetStore,
        source_url: str | None,
        ttl_s: float = DEFAULT_TTL_S,
        source_timeout_s: float = DEFAULT_SOURCE_TIMEOUT_S,
    ) -> None:
        self._store = store
        self._source_url = source_url
        self._source_timeout_s = source_timeout_s
        self._stored: FreshCache[pa.Table | None] = FreshCache(ttl_s)
        self._source: FreshCache[pa.Table] = FreshCache(ttl_s)

    @property
    def has_source(self) -> bool:
        return bool(self._source_url)

    def stored(self, tenant: str) -> pa.Table | None:
        """The stored tags of `tenant` sorted by name, or None if nothing was materialised."""

        def load() -> pa.Table | None:
            try:
                return self._store.read("tags", tenant).sort_by("tag_name")
            except MissingPartition:
                return None

        return self._stored.get(tenant, load, self._store.partition_version("tags", tenant))

    def source(self, tenant: str) -> pa.Table:
        """The source's tags of `tenant` sorted by name (UnknownTenant if the source has no
        such tenant, SourceUnavailable if it cannot be reached)."""

        def load() -> pa.Table:
            assert self._source_url is not None
            with (
                connect(self._source_url) as conn,
                answer_within(conn, self._source_timeout_s, "reading the tag list"),
            ):
                return read_tags(conn, tenant).sort_by("tag_name")

        return self._source.get(tenant, load)

    def invalidate(self, tenant: str) -> None:
        self._stored.invalidate(tenant)
        self._source.invalidate(tenant)
