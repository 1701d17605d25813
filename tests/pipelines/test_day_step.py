"""The day asset only wires Dagster around the day step (daystep.materialise): a day published by
`tagflow materialize` is byte for byte the day the step publishes on its own, and the read API's
source fallback, which runs the same step into memory, holds the same rows."""

from __future__ import annotations

import hashlib
import threading
from datetime import date
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from tagflow.cli.runs import materialize_days
from tagflow.daystep.materialise import materialise_day, stage_tags
from tagflow.io_managers import DatasetStore, day_writer
from tagflow.io_managers.partition_writer import PartitionWriter
from tagflow.readapi.engine.fallback import SourceProducts
from tagflow.schemas.registry import DATED, Kind, dataset
from tagflow.settings import Settings
from tagflow.source import day_stream
from tagflow.source.tenant_source import TenantSource

DAY = date(2026, 3, 2)


def digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*.parquet"))
    }


def published_alone(pg_url: str, tenant: str, root: Path) -> None:
    """The tags and the day DAY of `tenant` published by the day step alone, without Dagster."""
    source, store = TenantSource(pg_url), DatasetStore(root)
    tags, staged_tags, plan = stage_tags(source, store, tenant)
    staged_tags.publish()
    staged, _ = materialise_day(source, store, tenant, DAY, tags, plan)
    for partition in staged.values():
        partition.publish()


def test_the_asset_publishes_exactly_what_the_day_step_publishes(small_plant, pg_url, tmp_path):
    tenant = small_plant.tenants[0].tenant
    through_dagster, alone = tmp_path / "dagster", tmp_path / "alone"
    settings = Settings(source_url=pg_url, store=str(through_dagster))
    (run,) = materialize_days(
        tenant, DAY, date(2026, 3, 3), dg.DagsterInstance.ephemeral(), settings
    )
    assert run.success

    published_alone(pg_url, tenant, alone)

    published = digests(through_dagster)
    assert len(published) == 1 + len(DATED)
    assert published == digests(alone)

    # The fallback runs the same step for a read, into memory: the same rows as the files.
    tags_file = pq.read_table(next(through_dagster.glob("tags/**/*.parquet")))
    products = SourceProducts(pg_url, tenant, tags_file, timeout_s=60)
    for name in DATED:
        stored = DatasetStore(through_dagster).read(name, tenant, DAY)
        entry = dataset(name)
        if entry.width_name is None:
            computed = getattr(products, name)(DAY, None)
        else:
            computed = products.samples(entry.width_name, entry.kind == Kind.SAMPLES_STR, DAY, None)
        assert computed.cast(stored.schema).equals(stored), name


def test_a_day_is_the_same_bytes_whatever_the_number_of_writer_threads(
    small_plant, pg_url, tmp_path, monkeypatch
):
    """Each dataset keeps one writer thread, which writes its chunks in order: one lane or
    three, with chunks of two tags each written on its own, the files are the same."""
    tenant = small_plant.tenants[0].tenant
    monkeypatch.setattr(day_stream, "CHUNK_TAGS", 2)
    monkeypatch.setattr(day_writer, "WRITE_BATCH_ROWS", 1)
    threads: dict[tuple[int, str], set[str]] = {}
    write = PartitionWriter.write

    def recorded(self, table):
        key = (day_writer.WRITER_LANES, self._dataset.name)
        threads.setdefault(key, set()).add(threading.current_thread().name)
        write(self, table)

    monkeypatch.setattr(PartitionWriter, "write", recorded)
    published = {}
    for lanes in (1, 3):
        monkeypatch.setattr(day_writer, "WRITER_LANES", lanes)
        root = tmp_path / f"lanes-{lanes}"
        published_alone(pg_url, tenant, root)
        published[lanes] = digests(root)
    assert len(published[1]) == 1 + len(DATED)
    assert published[1] == published[3]
    # No dataset was written from two threads, and with three lanes all three wrote.
    dated = {key: used for key, used in threads.items() if key[1] in DATED}
    assert all(len(used) == 1 for used in dated.values()), dated
    assert len({name for (lanes, _), used in dated.items() if lanes == 3 for name in used}) == 3
