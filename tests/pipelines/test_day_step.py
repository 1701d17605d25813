"""The day asset only wires Dagster around the day step (daystep.materialise): a day published by
`tagflow materialize` is byte for byte the day the step publishes on its own, and the read API's
source fallback, which runs the same step into memory, holds the same rows."""

from __future__ import annotations

import gc
import hashlib
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from tagflow.cli.runs import materialize_days
from tagflow.daystep import materialise
from tagflow.daystep.materialise import materialise_day, materialise_days, stage_tags
from tagflow.errors import SourceUnavailable
from tagflow.io_managers import DatasetStore, day_writer
from tagflow.io_managers.partition_writer import PartitionWriter
from tagflow.readapi.engine.fallback import SourceProducts
from tagflow.schemas.dataset_checks import AuditFailed
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


RANGE = [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)]


def staged_bytes(staged) -> dict[str, str]:
    digests = {name: partition.sha256 for name, partition in staged.items()}
    for partition in staged.values():
        partition.discard()
    return digests


def test_a_range_reads_ahead_and_stages_each_day_as_the_day_alone(small_plant, pg_url, tmp_path):
    """materialise_days begins each next day's read while the day before is written: every
    day's files and fingerprint are those of the day staged on its own."""
    tenant = small_plant.tenants[0].tenant
    source, store = TenantSource(pg_url), DatasetStore(tmp_path)
    tags, staged_tags, plan = stage_tags(source, store, tenant)
    staged_tags.discard()
    alone = {}
    for day in RANGE:
        staged, fingerprint = materialise_day(source, store, tenant, day, tags, plan)
        alone[day] = (staged_bytes(staged), fingerprint.version)
    ranged = [
        (staged_bytes(staged), fingerprint.version)
        for staged, fingerprint in materialise_days(source, store, tenant, RANGE, tags, plan)
    ]
    assert ranged == [alone[day] for day in RANGE]


def test_a_failed_read_ahead_fails_its_own_day_and_a_failed_day_leaves_nothing(
    small_plant, pg_url, tmp_path, monkeypatch
):
    """The next day's source lost while this day is written: this day is staged, the error
    comes with the next day. This day failing while the next is read ahead: the error comes
    at once, nothing staged stays, and the read ahead ends on its own, its spill removed."""
    tenant = small_plant.tenants[0].tenant
    # Spill folders in a temp folder of this test's own (other test workers spill too).
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    source, store = TenantSource(pg_url), DatasetStore(tmp_path / "store")
    tags, staged_tags, plan = stage_tags(source, store, tenant)
    staged_tags.discard()
    chunks = materialise.raw_day_chunks

    def lost_on_the_second_day(url, tenant, ids, day_start, *args, **kwargs):
        if day_start.date() == RANGE[1]:
            raise SourceUnavailable("the source went away")
        yield from chunks(url, tenant, ids, day_start, *args, **kwargs)

    monkeypatch.setattr(materialise, "raw_day_chunks", lost_on_the_second_day)
    days = materialise_days(source, store, tenant, RANGE, tags, plan)
    first, _ = next(days)
    with pytest.raises(SourceUnavailable, match="went away"):
        next(days)
    staged_bytes(first)

    monkeypatch.setattr(materialise, "raw_day_chunks", chunks)
    finish = day_writer.DayWriter.finish

    def failing_finish(self, *args, **kwargs):
        if self._day == RANGE[0]:
            raise AuditFailed("spans", "a broken chunk", [])
        return finish(self, *args, **kwargs)

    monkeypatch.setattr(day_writer.DayWriter, "finish", failing_finish)
    with pytest.raises(AuditFailed):
        next(materialise_days(source, store, tenant, RANGE, tags, plan))
    deadline = time.monotonic() + 30
    while any(t.name == "tagflow-next-day" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the read ahead did not end"
        time.sleep(0.05)
    gc.collect()
    assert list(temp.iterdir()) == []
    assert [p for p in (tmp_path / "store").rglob("*") if p.is_file()] == []
