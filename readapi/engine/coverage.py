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

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from datetime import date
from typing import TYPE_CHECKING, Generic, TypeVar

import pyarrow as pa

from tagflow.errors import CorruptPartition, MissingPartition
from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.schemas.registry import DATASETS

if TYPE_CHECKING:
    # Only named: the fallback (and the database drivers it needs) is imported by the engine,
    # and only when a source is configured.
    from tagflow.readapi.engine.fallback import SourceFallback

# The last dataset each branch of the day step publishes.
COVERAGE_DATASETS = tuple(name for name, entry in DATASETS.items() if entry.last_of_branch)
log = logging.getLogger(__name__)

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
    """Materialised days per tenant, from the store's partition listing, cached; less the
    days set aside because one of their files cannot be read."""

    def __init__(
        self,
        store: DatasetStore,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._days: FreshCache[frozenset[date]] = FreshCache(ttl_s, clock)
        self._ttl_s = ttl_s
        self._clock = clock
        # tenant → day → (dataset of the unreadable file, its identity, when it expires).
        self._unreadable: dict[str, dict[date, tuple[str, Hashable, float]]] = {}
        self._lock = threading.Lock()

    def days(self, tenant: str) -> frozenset[date]:
        versions = [self._store.listing_version(name, tenant) for name in COVERAGE_DATASETS]
        version = None if None in versions else tuple(versions)
        listed = self._days.get(tenant, lambda: self._list(tenant), version)
        return listed - self._set_aside(tenant)

    def set_aside(self, tenant: str, dataset: str, day: date) -> None:
        """Count `day` as not materialised while its `dataset` file is still the unreadable
        one (on a local store: the same file identity; elsewhere for ttl_s seconds), so reads
        answer it from the source until a rerun replaces the file."""
        identity = self._store.partition_version(dataset, tenant, day)
        with self._lock:
            entries = self._unreadable.setdefault(tenant, {})
            entries[day] = (dataset, identity, self._clock() + self._ttl_s)

    def _set_aside(self, tenant: str) -> frozenset[date]:
        with self._lock:
            entries = dict(self._unreadable.get(tenant, {}))
        if not entries:
            return frozenset()
        now, kept = self._clock(), set()
        for day, (dataset, identity, expires) in entries.items():
            if identity is None:
                still = expires > now
            else:
                still = self._store.partition_version(dataset, tenant, day) == identity
            if still:
                kept.add(day)
        with self._lock:
            current = self._unreadable.get(tenant, {})
            for day in set(entries) - kept:
                if current.get(day) == entries[day]:
                    del current[day]
        return frozenset(kept)

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
    """The tenant's tags: the stored `tags` snapshot, and when the engine has a source, the
    source's (for days answered from the source and tags created since)."""

    def __init__(self, store: DatasetStore, fallback: SourceFallback | None, ttl_s: float) -> None:
        self._store = store
        self._fallback = fallback
        self._stored: FreshCache[pa.Table | None] = FreshCache(ttl_s)

    @property
    def has_source(self) -> bool:
        return self._fallback is not None

    def stored(self, tenant: str) -> pa.Table | None:
        """The stored tags of `tenant` sorted by name, or None if nothing was materialised."""

        def load() -> pa.Table | None:
            try:
                return self._store.read("tags", tenant).sort_by("tag_name")
            except MissingPartition:
                return None
            except CorruptPartition:
                if self._fallback is None:
                    raise
                # The stored list is the source's as of the last run: the source's own list
                # stands in for it until a rerun rewrites the file.
                log.warning("answering tenant %r with the source's tag list", tenant)
                return self._fallback.tags(tenant)

        return self._stored.get(tenant, load, self._store.partition_version("tags", tenant))

    def source(self, tenant: str) -> pa.Table:
        """The source's tags of `tenant` sorted by name (UnknownTenant if the source has no
        such tenant, SourceUnavailable if it cannot be reached); only with a source."""
        assert self._fallback is not None
        return self._fallback.tags(tenant)

    def invalidate(self, tenant: str) -> None:
        self._stored.invalidate(tenant)
        if self._fallback is not None:
            self._fallback.invalidate(tenant)
