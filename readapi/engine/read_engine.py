"""The read engine: what every read of one store shares (the store and the parsed footers of
its files, its coverage index, the tenants' tag catalogues and, when a source is configured, the
source fallback), built once from a ReadConfig. The client's store transport and the HTTP
service each hold one, and ask it for the reader of a tenant."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.io_managers.partition_reader import FOOTER_CACHE_BYTES, FooterCache
from tagflow.readapi.engine.config import ReadConfig
from tagflow.readapi.engine.coverage import CoverageIndex, TagCatalogue
from tagflow.readapi.engine.reader import TenantReader

if TYPE_CHECKING:
    from tagflow.annotations import AnnotationStore


class ReadEngine:
    """Reads of any tenant of one store, with source fallback when configured."""

    def __init__(self, config: ReadConfig) -> None:
        self.config = config
        # One footer cache for every tenant's readers: its memory bound holds for the engine.
        self.footers = FooterCache(FOOTER_CACHE_BYTES)
        root = config.store.root if isinstance(config.store, DatasetStore) else config.store
        self.store = DatasetStore(root, self.footers)
        self.fallback = None
        if config.source_url:
            # Imported here: the database drivers and the derived-tag definitions are only
            # needed, and only installed (tagflow[source]), where a source is configured.
            from tagflow.readapi.engine.fallback import SourceFallback

            self.fallback = SourceFallback(config, self.store)
        self.coverage = CoverageIndex(self.store, config.cache_ttl_s)
        self.catalogue = TagCatalogue(self.store, self.fallback, config.cache_ttl_s)

    def __repr__(self) -> str:
        source = "with source" if self.fallback is not None else "without source"
        return f"ReadEngine({self.store!r}, {source})"

    @cached_property
    def annotations(self) -> AnnotationStore | None:
        """The span annotations' store (DESIGN §9), None where no state database is configured.
        The first read or write migrates it; the demo's embedded one is started (and its
        database created) here. A failure (StateUnavailable) is not kept: the next call tries
        again."""
        if self.config.state_url is None:
            return None
        # Imported here: SQLAlchemy and the driver come with tagflow[source], not the client.
        from tagflow.annotations import AnnotationStore, state_url

        return AnnotationStore.at(
            state_url(self.config.state_url, source_url=self.config.source_url)
        )

    def reader(self, tenant: str) -> TenantReader:
        """The reads of `tenant` (InvalidName if it is not a valid tenant name)."""
        return TenantReader(self, tenant)
