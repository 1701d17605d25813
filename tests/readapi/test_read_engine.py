"""The read engine owns what its reads share: the parsed footers of the store's files are kept
by the engine (one cache for every tenant's reader), not by the process."""

from __future__ import annotations

from datetime import timedelta

from tagflow.io_managers import DatasetStore
from tagflow.readapi.engine.config import ReadConfig
from tagflow.readapi.engine.read_engine import ReadEngine
from tagflow.readapi.query import SpansQuery
from tagflow.time_range import TimeRange
from tests.readapi.test_month_copies import D1


def test_footers_are_kept_by_the_engine_that_read_them(plant):
    one, other = (ReadEngine(ReadConfig(store=plant.root)) for _ in range(2))
    assert one.store.footers is one.footers and len(one.footers) == 0
    window = TimeRange(D1, D1 + timedelta(days=2))
    for tenant in plant.tenants:
        name = one.catalogue.stored(tenant).column("tag_name")[0].as_py()
        one.reader(tenant).read(SpansQuery(tag_name=name, time_range=window, allow_source=False))
    # Two days of spans of each tenant (and its tags), parsed once, in this engine only.
    assert len(one.footers) >= 2 * len(plant.tenants)
    assert len(other.footers) == 0
    # A store given to an engine is read through the engine's cache, not its own.
    given = DatasetStore(plant.root)
    assert ReadEngine(ReadConfig(store=given)).store.footers is not given.footers
