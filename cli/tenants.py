"""What `tagflow tenants` reports beside each tenant of the source: the last day the store holds
every dataset of (a day counts once the last dataset of each branch of the day step is there,
as the read API counts it)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.schemas.registry import DATASETS

_LAST_OF_BRANCH = [name for name, entry in DATASETS.items() if entry.last_of_branch]


def last_materialised_days(store: DatasetStore, tenants: Iterable[str]) -> dict[str, date | None]:
    """Per tenant, the last day materialised in `store`, None if none is."""
    last: dict[str, date | None] = {}
    for tenant in tenants:
        days = set.intersection(
            *(set(store.materialised_days(name, tenant)) for name in _LAST_OF_BRANCH)
        )
        last[tenant] = max(days, default=None)
    return last
