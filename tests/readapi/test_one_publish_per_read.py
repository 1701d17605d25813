"""One read API call takes a day's datasets from one publish of that day (docs/guarantees.md,
"Republishing a day"). A republish replaces a day's files one after another; a call that meets
files of two publishes reads again until the publish is complete, and a publish stopped
part-way is answered from the source, or is a typed error without one.

The day here: `line/flow` holds 1.0 from 03-01 06:00 and 2.0 from 03-02 06:00 (version 1),
then 10.0 and 20.0 (version 2). Averages over the 12-hour buckets of 03-02 are computed from
the day's transitions and its carry-in (two datasets), so by hand: version 1 gives
(6 h × 1 + 6 h × 2) / 12 h = 1.5 and 2.0; version 2 gives 15.0 and 20.0; version 2's
transitions with version 1's carry-in would give (6 × 1 + 6 × 20) / 12 = 10.5 and 20.0."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime

import pytest
from psycopg import sql

from tagflow.daystep.materialise import materialise_day, stage_tags
from tagflow.errors import CorruptPartition
from tagflow.io_managers import DatasetStore
from tagflow.io_managers.compaction import COMPACTED_DATASETS, compact_month
from tagflow.io_managers.partition_writer import StagedPartition
from tagflow.readapi import Client
from tagflow.readapi.engine import reader
from tagflow.schemas.registry import DATASETS
from tagflow.source.tenant_source import TenantSource
from tests.readapi.conftest import add_line_flow, datasets_read

DAY = date(2026, 3, 2)
RANGE = ("2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z")
VERSION_1 = [1.5, 2.0]
VERSION_2 = [15.0, 20.0]


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


@pytest.fixture
def day(make_tenant, admin_conn, pg_url, tmp_path):
    """(tenant, store root, stage: the day's datasets staged from the source as it is now,
    to_version_2: the source's rows changed to version 2), version 1 published."""
    tenant = make_tenant().name
    add_line_flow(admin_conn, tenant)
    s = sql.Identifier(tenant)
    source, store = TenantSource(pg_url), DatasetStore(tmp_path)

    def stage(on: date = DAY) -> dict[str, StagedPartition]:
        tags, staged_tags, _ = stage_tags(source, store, tenant)
        staged_tags.publish()
        staged, _ = materialise_day(source, store, tenant, on, tags)
        return staged

    def to_version_2() -> None:
        update = "UPDATE {}.tag_data SET tag_value = tag_value * 10"
        admin_conn.execute(sql.SQL(update).format(s))

    publish(stage(), DATASETS)
    return tenant, tmp_path, stage, to_version_2


def publish(staged: dict[str, StagedPartition], datasets) -> None:
    """Publish `datasets` of a staged day, in the order the day step does (registry order)."""
    for name in DATASETS:
        if name in datasets and name in staged:
            staged[name].publish()


def averages(client: Client) -> list[float]:
    frame = client.sample_metric_data("12h", tag_names="line/flow", time_range=RANGE)
    return frame["line/flow"].tolist()


def test_a_call_during_a_republish_answers_from_the_new_publish_whole(day, monkeypatch):
    tenant, root, stage, to_version_2 = day
    client = Client(tenant=tenant, store=root, allow_source=False)
    assert averages(client) == VERSION_1
    to_version_2()
    staged = stage()
    publish(staged, {"transitions"})  # the republish has replaced transitions only so far
    # The rest is published once the call has read the old carry-in: the call has then met
    # both publishes, and must not answer with version 2's transitions and version 1's carry-in.
    carry_in_read = threading.Event()
    read_tag_rows = DatasetStore.read_tag_rows

    def spy(self, dataset, *args, **kwargs):
        try:
            return read_tag_rows(self, dataset, *args, **kwargs)
        finally:
            if dataset == "carry_in":
                carry_in_read.set()

    monkeypatch.setattr(DatasetStore, "read_tag_rows", spy)

    def rest_of_the_republish() -> None:
        carry_in_read.wait(10)
        publish(staged, set(DATASETS) - {"transitions"})

    publisher = threading.Thread(target=rest_of_the_republish)
    publisher.start()
    try:
        assert averages(client) == VERSION_2
    finally:
        publisher.join()
    assert carry_in_read.is_set()


def test_a_republish_stopped_part_way_is_answered_from_the_source_or_refused(
    day, pg_url, monkeypatch
):
    tenant, root, stage, to_version_2 = day
    monkeypatch.setattr(reader, "REPUBLISH_WAIT_S", 0.3)
    stored_only = Client(tenant=tenant, store=root, allow_source=False)
    with_source = Client(tenant=tenant, store=root, source_url=pg_url)
    to_version_2()
    staged = stage()
    publish(staged, {"transitions"})  # and the run was stopped there
    with pytest.raises(CorruptPartition) as refused:
        averages(stored_only)
    message = str(refused.value)
    assert "2026-03-02" in message and "materialise that day again" in message
    assert str(root) not in message
    assert averages(with_source) == VERSION_2  # the source holds version 2


def test_a_completed_republish_is_seen_by_the_next_call(day, pg_url, monkeypatch):
    tenant, root, stage, to_version_2 = day
    monkeypatch.setattr(reader, "REPUBLISH_WAIT_S", 0.3)
    stored_only = Client(tenant=tenant, store=root, allow_source=False)
    with_source = Client(tenant=tenant, store=root, source_url=pg_url)
    to_version_2()
    staged = stage()
    publish(staged, {"transitions"})
    with pytest.raises(CorruptPartition):
        averages(stored_only)
    assert averages(with_source) == VERSION_2  # the day set aside: from the source
    publish(staged, set(DATASETS) - {"transitions"})
    assert averages(stored_only) == VERSION_2
    # The day set aside while it was mixed is read from the store again.
    reads = datasets_read(monkeypatch, "read_tag_rows")
    assert averages(with_source) == VERSION_2
    assert {"transitions", "carry_in"} <= set(reads)


def test_every_file_of_a_day_carries_one_publish_id_derived_from_its_content(day):
    tenant, root, stage, to_version_2 = day
    store = DatasetStore(root)

    def day_files() -> dict[str, tuple[bytes, str | None]]:
        out = {}
        for name in DATASETS:
            if DATASETS[name].dated:
                path = store.partition_path(name, tenant, DAY)
                out[name] = (path.read_bytes(), store.day_footer(name, tenant, DAY).publish)
        return out

    first = day_files()
    (first_id,) = {publish_id for _, publish_id in first.values()}
    assert first_id is not None
    publish(stage(), DATASETS)  # a rerun over the same rows
    assert day_files() == first  # byte for byte, the same id
    to_version_2()
    publish(stage(), DATASETS)
    (changed_id,) = {publish_id for _, publish_id in day_files().values()}
    assert changed_id not in (None, first_id)


def test_a_day_read_from_its_month_copy_is_of_the_publish_of_its_other_files(
    day, pg_url, admin_conn, monkeypatch
):
    """03-01 and 03-02 copied into March's copies; the 12-hour averages of both days read
    the transitions from the copy and 03-01's carry-in from its day file. With 0.5 held
    from 02-28 06:00: version 1 gives 0.75, 1.0, 1.5, 2.0 and version 2 7.5, 10.0 on
    03-01; the copy's transitions with version 2's carry-in (5.0)
    would give (6 × 5 + 6 × 1) / 12 = 3.0."""
    tenant, root, stage, to_version_2 = day
    monkeypatch.setattr(reader, "REPUBLISH_WAIT_S", 0.3)
    s = sql.Identifier(tenant)
    admin_conn.execute(
        sql.SQL("INSERT INTO {}.tag_data VALUES (5, %s, 0.5)").format(s),
        (datetime(2026, 2, 28, 6, tzinfo=UTC),),
    )
    publish(stage(date(2026, 3, 1)), DATASETS)
    store = DatasetStore(root)
    names = store.read("tags", tenant)
    for dataset in COMPACTED_DATASETS:
        compact_month(store, dataset, tenant, date(2026, 3, 1), names).publish()
    month_reads = datasets_read(monkeypatch, "read_month_rows")
    two_days = ("2026-03-01T00:00:00Z", "2026-03-03T00:00:00Z")
    stored_only = Client(tenant=tenant, store=root, allow_source=False)
    with_source = Client(tenant=tenant, store=root, source_url=pg_url)

    def averages_of(client: Client) -> list[float]:
        frame = client.sample_metric_data("12h", tag_names="line/flow", time_range=two_days)
        return frame["line/flow"].tolist()

    assert averages_of(stored_only) == [0.75, 1.0, 1.5, 2.0]
    assert "transitions" in month_reads
    to_version_2()
    publish(stage(date(2026, 3, 1)), {"carry_in"})  # 03-01's transitions are still the copy's
    with pytest.raises(CorruptPartition):
        averages_of(stored_only)
    # 03-01 from the source (version 2), 03-02 stored: its first 6 h hold 03-01's 10.0.
    assert averages_of(with_source) == [7.5, 10.0, (6 * 10.0 + 6 * 2.0) / 12, 2.0]
