"""How a read engine is configured: every setting the client's store transport, the HTTP
service and the source fallback share, with its default, in one frozen object built from the
deployment's Settings (or from the client's arguments)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from upath import UPath

from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.readapi.engine.limits import AnswerLimits
from tagflow.settings import Settings

StoreRoot = str | os.PathLike[str] | UPath | DatasetStore


@dataclass(frozen=True, kw_only=True)
class ReadConfig:
    """What one read engine reads from and how far it goes."""

    # The dataset root (a local path or an object-store URL), or the store over it.
    store: StoreRoot
    # The source database for days not materialised (None: materialised days only), or
    # EMBEDDED_SOURCE for the demo's server.
    source_url: str | None = field(default=None, repr=False)
    # Wall-time bound of one source read (a day's rows and carry-in, or the tag list): a source
    # that goes silent mid-query must fail the read, not hold a caller or a service thread.
    source_timeout_s: float = 60.0
    # How long cached listings and tag lists live where the store cannot say they changed
    # (object stores, the source's tag list): a day just materialised is answered, correctly,
    # from the source until then.
    cache_ttl_s: float = 30.0
    # Missing days one read may compute from the source: each costs the production database a
    # day's extract, so a read over months of unmaterialised history is refused, not attempted.
    max_source_days: int = 31
    # The largest answer of one read (TAGFLOW_MAX_CELLS, TAGFLOW_MAX_ROWS).
    answer_limits: AnswerLimits = field(
        default_factory=lambda: AnswerLimits.from_settings(Settings())
    )
    # The deployment's derived tags file (TAGFLOW_DERIVED_TAGS); None: the derived tags the
    # stored snapshot was materialised with.
    derived_tags: str | os.PathLike[str] | None = None
    # tagflow's state database of span annotations (TAGFLOW_STATE_URL, or EMBEDDED_SOURCE for
    # the demo's server); None: no annotations, reads answer the computed spans alone.
    state_url: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, **changes: Any) -> ReadConfig:
        """The read configuration of a deployment's settings, with `changes` (None values
        leave a field as the settings have it)."""
        config = cls(
            store=settings.store,
            source_url=settings.source_url,
            answer_limits=AnswerLimits.from_settings(settings),
            derived_tags=settings.derived_tags,
            state_url=settings.state_database(),
        )
        return config.replace(**changes)

    def replace(self, **changes: Any) -> ReadConfig:
        """This configuration with `changes`; None values leave a field as it is."""
        changes = {name: value for name, value in changes.items() if value is not None}
        return dataclasses.replace(self, **changes)
