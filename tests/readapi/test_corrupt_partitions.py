"""A stored file that cannot be read (zero bytes, truncated) in a real materialised store: with a
source, its day is answered from the source, equal to the materialised answer; without one, the
read is a typed CorruptPartition (HTTP 503 `corrupt_partition`) naming the day, never a path or
a raw Arrow error. A zero-byte `tags` file gets the same treatment."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tagflow.errors import CorruptPartition
from tagflow.io_managers import DatasetStore
from tagflow.readapi import Client, NotMaterialised
from tagflow.readapi.engine.coverage import CoverageIndex
from tagflow.readapi.server.app import create_app
from tests.readapi.conftest import BackgroundServer, copy_days
from tests.readapi.expected import all_answers, assert_same_answers

D1 = datetime(2026, 3, 1, tzinfo=UTC)
DAY2 = date(2026, 3, 2)
RANGE = (D1 + timedelta(hours=5), D1 + timedelta(days=2, hours=7))
DAYS = [date(2026, 3, 1), DAY2, date(2026, 3, 3)]
# Every dataset a read may open for day 2.
READ_DATASETS = ("transitions", "carry_in", "spans", "samples_1m", "samples_1h", "samples_1d",
                 "samples_str_1m", "samples_str_1h", "samples_str_1d")  # fmt: skip


def partition_file(root: Path, dataset: str, tenant: str, day: date | None) -> Path:
    return Path(DatasetStore(root).partition_path(dataset, tenant, day).path)


def zero(path: Path) -> None:
    path.write_bytes(b"")


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


@pytest.fixture
def damaged(plant, tmp_path):
    """A copy of the plant's first tenant, days 1-3, with every day-2 file zeroed or truncated."""
    tenant = plant.tenants[0]
    copy_days(plant.root, tmp_path, tenant, DAYS)
    for number, dataset in enumerate(READ_DATASETS):
        (zero if number % 2 else truncate)(partition_file(tmp_path, dataset, tenant, DAY2))
    return tenant, tmp_path


def assert_typed(error: CorruptPartition, tenant: str, root: Path) -> None:
    message = str(error)
    assert f"tenant {tenant!r} on 2026-03-02 cannot be read" in message
    assert "materialise that day again" in message
    assert str(root) not in message and "/" not in message.split("tenant")[0]
    assert "Arrow" not in message and "parquet" not in message.lower()


def test_without_a_source_every_read_of_the_day_is_a_corrupt_partition(damaged):
    tenant, root = damaged
    client = Client(store=root, tenant=tenant)
    reads = [
        lambda: client.get_metric_data(None, RANGE),
        lambda: client.get_spans("plant/special/constant", RANGE),
        lambda: client.sample_metric_data("1h", time_range=RANGE),
        lambda: client.sample_metric_data("7m", time_range=RANGE),
        lambda: client.get_tags(RANGE),
    ]
    for read in reads:
        with pytest.raises(CorruptPartition) as error:
            read()
        assert_typed(error.value, tenant, root)
    # Days that can be read still answer.
    assert client.get_spans("plant/special/constant", (D1, D1 + timedelta(days=1)))


def test_with_a_source_the_day_is_answered_from_it_like_the_materialised_one(
    damaged, plant, pg_url
):
    tenant, root = damaged
    with (
        Client(store=plant.root, tenant=tenant) as materialised,
        Client(store=root, tenant=tenant, source_url=pg_url) as fallback,
    ):
        names = [tag.name for tag in materialised.get_tags()]
        want = all_answers(materialised, names, RANGE)
        assert_same_answers(all_answers(fallback, names, RANGE), want)
        # Set aside until rewritten: the next read goes straight to the source for that day.
        assert DAY2 not in fallback._transport._coverage.days(tenant)
        assert_same_answers(all_answers(fallback, names, RANGE), want)


def test_a_read_that_refuses_the_source_gets_the_typed_error(damaged, pg_url):
    tenant, root = damaged
    strict = Client(store=root, tenant=tenant, source_url=pg_url, allow_source=False)
    with pytest.raises(CorruptPartition) as error:
        strict.get_spans("plant/special/constant", RANGE)
    assert_typed(error.value, tenant, root)


def test_a_rewritten_day_is_read_from_the_store_again(plant, tmp_path):
    tenant = plant.tenants[0]
    copy_days(plant.root, tmp_path, tenant, DAYS)
    store = DatasetStore(tmp_path)
    coverage = CoverageIndex(store, ttl_s=30)
    zero(partition_file(tmp_path, "spans", tenant, DAY2))
    coverage.set_aside(tenant, "spans", DAY2)
    assert coverage.days(tenant) == {DAYS[0], DAYS[2]}
    assert coverage.split(tenant, DAYS) == ([DAYS[0], DAYS[2]], [DAY2])
    copy_days(plant.root, tmp_path, tenant, [DAY2])  # a rerun publishes the day again
    assert coverage.days(tenant) == set(DAYS)


def test_set_aside_on_an_object_store_lasts_the_ttl(plant, tmp_path, monkeypatch):
    tenant = plant.tenants[0]
    copy_days(plant.root, tmp_path, tenant, DAYS)
    store = DatasetStore(tmp_path)
    monkeypatch.setattr(DatasetStore, "partition_version", lambda *args: None)
    now = [0.0]
    coverage = CoverageIndex(store, ttl_s=30, clock=lambda: now[0])
    coverage.set_aside(tenant, "spans", DAY2)
    assert DAY2 not in coverage.days(tenant)
    now[0] = 31.0
    assert DAY2 in coverage.days(tenant)


def test_a_zero_byte_tags_file_with_a_source_answers_every_call(plant, pg_url, tmp_path):
    tenant = plant.tenants[0]
    copy_days(plant.root, tmp_path, tenant, DAYS)
    zero(partition_file(tmp_path, "tags", tenant, None))
    with (
        Client(store=plant.root, tenant=tenant) as materialised,
        Client(store=tmp_path, tenant=tenant, source_url=pg_url) as fallback,
    ):
        assert fallback.get_tags() == materialised.get_tags()
        names = [tag.name for tag in materialised.get_tags()]
        assert_same_answers(
            all_answers(fallback, names, RANGE), all_answers(materialised, names, RANGE)
        )


def test_a_zero_byte_tags_file_without_a_source_is_a_typed_error(plant, tmp_path):
    tenant = plant.tenants[0]
    copy_days(plant.root, tmp_path, tenant, DAYS)
    zero(partition_file(tmp_path, "tags", tenant, None))
    client = Client(store=tmp_path, tenant=tenant)
    for read in (
        client.get_tags,
        lambda: client.get_spans("plant/special/constant", RANGE),
        lambda: client.sample_metric_data("1h", time_range=RANGE),
    ):
        with pytest.raises(CorruptPartition, match=rf"stored tags of tenant '{tenant}'") as error:
            read()
        assert str(tmp_path) not in str(error.value)


def test_http_answers_503_corrupt_partition_without_a_source(damaged, plant, keys_file):
    tenant, root = damaged
    with BackgroundServer(create_app(root, keys_file)) as server:
        headers = {"Authorization": f"Bearer {plant.key(tenant)}"}
        answer = httpx.get(
            f"{server.url}/v1/metrics/data",
            params={"start": RANGE[0].isoformat(), "end": RANGE[1].isoformat()},
            headers=headers,
            timeout=60,
        )
        assert answer.status_code == 503
        body = answer.json()
        assert body["error"] == "corrupt_partition"
        assert "2026-03-02" in body["message"] and str(root) not in answer.text
        remote = Client(host=server.url, tenant=tenant, api_key=plant.key(tenant))
        with pytest.raises(CorruptPartition) as error:
            remote.get_spans("plant/special/constant", RANGE)
        assert_typed(error.value, tenant, root)


def test_http_answers_the_day_from_the_source(damaged, plant, keys_file, pg_url):
    tenant, root = damaged
    with (
        BackgroundServer(create_app(root, keys_file, pg_url)) as server,
        Client(host=server.url, tenant=tenant, api_key=plant.key(tenant)) as remote,
        Client(store=plant.root, tenant=tenant) as materialised,
    ):
        names = ["plant/special/constant", "plant/special/mixed"]
        assert_same_answers(
            all_answers(remote, names, RANGE), all_answers(materialised, names, RANGE)
        )
        strict = Client(
            host=server.url, tenant=tenant, api_key=plant.key(tenant), allow_source=False
        )
        # Set aside by the reads above: now a day the store does not have.
        with pytest.raises(NotMaterialised, match="2026-03-02"):
            strict.get_spans("plant/special/constant", RANGE)


def test_a_stray_folder_beside_the_days_changes_no_answer(plant, tmp_path, caplog):
    """A backup copy of a day (`date=2026-03-02.bak`) and other strays are not partitions."""
    tenant = plant.tenants[0]
    copy_days(plant.root, tmp_path, tenant, DAYS)
    for dataset in READ_DATASETS:
        day_file = partition_file(tmp_path, dataset, tenant, DAY2)
        for stray in ("date=2026-03-02.bak", "date=2026-03-05.bak", "date=today"):
            (day_file.parent.parent / stray).mkdir()
            (day_file.parent.parent / stray / day_file.name).write_bytes(day_file.read_bytes())
    with (
        Client(store=plant.root, tenant=tenant) as materialised,
        Client(store=tmp_path, tenant=tenant) as with_strays,
    ):
        names = [tag.name for tag in materialised.get_tags()]
        assert_same_answers(
            all_answers(with_strays, names, RANGE), all_answers(materialised, names, RANGE)
        )
        assert with_strays.get_spans(names[0]) == materialised.get_spans(names[0])
    assert "ignoring 'date=2026-03-05.bak'" in caplog.text
