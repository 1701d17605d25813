"""Month copies (io_managers/compaction.py): made by their Dagster asset, they answer every
read exactly as the day files do, at every boundary; a day rewritten after its month was
copied is read from its own file, never from the stale copy; the schedule asks for closed,
settled months whose copy is missing or behind."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pytest

from tagflow.cli.runs import copy_months, materialize_days
from tagflow.demo.synthetic_plant import generate_plant
from tagflow.io_managers import DatasetStore
from tagflow.io_managers.compaction import COMPACTED_DATASETS, months_to_copy
from tagflow.readapi import Client
from tagflow.settings import Settings
from tests.conftest import drop_tenant, unique_tenant_name
from tests.readapi.conftest import copy_days, datasets_read
from tests.readapi.expected import all_answers, assert_same_answers

MARCH = date(2026, 3, 1)
DAYS = [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)]
D1 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def copied(plant, pg_url, tmp_path_factory) -> Path:
    """The plant's store with March copied, through the month copies' Dagster job."""
    root = tmp_path_factory.mktemp("copied-store")
    instance = dg.DagsterInstance.ephemeral()
    settings = Settings(source_url=pg_url, store=str(root))
    for tenant in plant.tenants:
        copy_days(plant.root, root, tenant, DAYS)
        (run,) = copy_months(tenant, [MARCH], instance, settings)
        assert run.success
    return root


@pytest.fixture
def month_reads(monkeypatch) -> list[str]:
    """The datasets read from month copies during a test."""
    return datasets_read(monkeypatch, "read_month_rows")


def test_every_dated_dataset_but_carry_in_is_copied_row_for_row(plant, copied):
    store, days = DatasetStore(copied), DatasetStore(plant.root)
    tenant = plant.tenants[0]
    for dataset in COMPACTED_DATASETS:
        footer = store.month_footer(dataset, tenant, MARCH)
        assert footer is not None and footer.directory is not None
        rows = sum(days.read(dataset, tenant, day).num_rows for day in DAYS)
        assert footer.metadata.num_rows == rows


@pytest.mark.parametrize(
    "time_range",
    [
        (D1, D1 + timedelta(days=3)),
        (D1 + timedelta(hours=20, seconds=5.5), D1 + timedelta(days=2, hours=3, minutes=7)),
        (D1 + timedelta(days=1), D1 + timedelta(days=3)),
    ],
)
def test_answers_from_the_copies_equal_the_answers_from_the_days(
    plant, copied, month_reads, time_range
):
    for tenant in plant.tenants:
        assert_copies_answer_as_days(plant.root, copied, tenant, time_range, month_reads)


def assert_copies_answer_as_days(
    days_root: Path, copied: Path, tenant: str, time_range: tuple, month_reads: list[str]
) -> None:
    with (
        Client(store=days_root, tenant=tenant, allow_source=False) as days,
        Client(store=copied, tenant=tenant, allow_source=False) as copies,
    ):
        names = [tag.name for tag in days.get_tags()]
        want = all_answers(days, names, time_range)
        reads_before = len(month_reads)
        got = all_answers(copies, names, time_range)
    assert_same_answers(got, want)
    assert len(month_reads) > reads_before  # the copies were used


def copied_store(source_root: Path, tenant: str, root: Path) -> DatasetStore:
    """A store of `tenant`'s days (from `source_root`) with March copied, for a test to change."""
    copy_days(source_root, root, tenant, DAYS)
    copy_months(
        tenant, [MARCH], dg.DagsterInstance.ephemeral(), Settings(source_url="x", store=str(root))
    )
    return DatasetStore(root)


def test_a_day_rewritten_after_the_copy_is_read_from_its_own_file(plant, copied, tmp_path):
    tenant = plant.tenants[0]
    root = tmp_path / "store"
    store = copied_store(plant.root, tenant, root)
    # A rerun of 03-02 that changed every value: the copy still holds the old ones.
    spans = store.read("spans", tenant, DAYS[1])
    changed = spans.set_column(
        spans.schema.get_field_index("value_double"),
        "value_double",
        pc.add(spans.column("value_double"), 1000.0),
    )
    store.write("spans", tenant, DAYS[1], changed)
    client = Client(store=root, tenant=tenant, allow_source=False)
    name = next(row["tag_name"] for row in changed.to_pylist() if row["value_double"] is not None)
    got = client.get_spans(name, (D1, D1 + timedelta(days=3)))
    on_day_2 = [
        s.value
        for s in got
        if s.begin_at < D1 + timedelta(days=2) and s.end_at > D1 + timedelta(days=1)
    ]
    assert on_day_2 and all(value >= 1000.0 for value in on_day_2)
    on_day_1 = [s.value for s in got if s.end_at <= D1 + timedelta(days=1)]
    assert on_day_1 and all(value < 1000.0 for value in on_day_1)


@pytest.mark.parametrize("rewritten", DAYS, ids=["first", "middle", "last"])
def test_copied_days_around_a_day_read_from_its_own_file_answer_as_the_days(
    plant, month_reads, tmp_path, rewritten
):
    """A range's transitions are read from the copy whole, with the day the copy no longer
    answers (rewritten after it) from its own file, before, between or after the copied days.
    The rewritten day holds the same rows, so every answer is the day files' answer."""
    tenant = plant.tenants[0]
    root = tmp_path / "store"
    store = copied_store(plant.root, tenant, root)
    store.write("transitions", tenant, rewritten, store.read("transitions", tenant, rewritten))
    time_range = (D1 + timedelta(hours=5, seconds=1.5), D1 + timedelta(days=2, hours=23))
    assert_copies_answer_as_days(plant.root, root, tenant, time_range, month_reads)


def test_whole_days_list_their_tags_from_tag_directories_decoding_nothing(
    plant, month_reads, tmp_path, monkeypatch
):
    """get_tags takes a whole stored day's tags from its transitions' tag directory: the month
    copy's where the read wants every day it holds, else each day file's. A tag whose value is
    held through days 2 and 3 without a transition (its samples still have a row each day) is
    not among the range's tags, and no row is decoded either way."""
    tenant = plant.tenants[0]
    days_root, copies_root = tmp_path / "days", tmp_path / "copies"
    copy_days(plant.root, days_root, tenant, DAYS)
    store = DatasetStore(days_root)
    quiet = store.read("samples_1d", tenant, DAYS[1]).column("tag_id")[0].as_py()
    for day in DAYS[1:]:
        transitions = store.read("transitions", tenant, day)
        store.write(
            "transitions",
            tenant,
            day,
            transitions.filter(pc.not_equal(transitions["tag_id"], quiet)),
        )
        assert quiet in store.read("samples_1d", tenant, day).column("tag_id").to_pylist()
    copied_store(days_root, tenant, copies_root)
    # The copy holds days 1-3; a read of days 2-3 alone takes each day file's directory.
    whole_copy, two_days = (
        (D1, D1 + timedelta(days=3)),
        (D1 + timedelta(days=1), D1 + timedelta(days=3)),
    )
    reads = datasets_read(monkeypatch, "read_tag_rows")
    footers = datasets_read(monkeypatch, "day_footer")
    with (
        Client(store=days_root, tenant=tenant, allow_source=False) as days,
        Client(store=copies_root, tenant=tenant, allow_source=False) as copies,
    ):
        for time_range in (whole_copy, two_days):
            want = {tag.id for tag in days.get_tags(time_range)}
            footers.clear()
            got = {tag.id for tag in copies.get_tags(time_range)}
            assert got == want
            assert ("transitions" in footers) == (time_range == two_days)
        assert quiet not in {tag.id for tag in days.get_tags(two_days)}
        assert quiet in {tag.id for tag in days.get_tags(whole_copy)}
    assert reads == [] and month_reads == []


def test_the_schedule_asks_for_closed_settled_months_missing_or_behind(plant, tmp_path):
    tenant = plant.tenants[0]
    copy_days(plant.root, tmp_path, tenant, DAYS)
    store = DatasetStore(tmp_path)
    assert months_to_copy(store, tenant, date(2026, 4, 7), settle_days=7) == []  # not settled
    ((month, newest),) = months_to_copy(store, tenant, date(2026, 4, 8), settle_days=7)
    assert month == MARCH and newest > 0
    copy_months(
        tenant,
        [MARCH],
        dg.DagsterInstance.ephemeral(),
        Settings(source_url="x", store=str(tmp_path)),
    )
    assert months_to_copy(store, tenant, date(2026, 4, 8), settle_days=7) == []  # up to date
    store.write("spans", tenant, DAYS[2], store.read("spans", tenant, DAYS[2]))  # a rerun
    ((month, later),) = months_to_copy(store, tenant, date(2026, 4, 8), settle_days=7)
    assert month == MARCH and later > newest  # a new run key: the copy is made again


def test_an_unreadable_copy_is_passed_over_for_the_day_files(plant, tmp_path):
    tenant = plant.tenants[0]
    copy_days(plant.root, tmp_path, tenant, DAYS)
    settings = Settings(source_url="x", store=str(tmp_path))
    copy_months(tenant, [MARCH], dg.DagsterInstance.ephemeral(), settings)
    copy = DatasetStore(tmp_path).month_path("spans", tenant, MARCH).path
    with open(copy, "r+b") as handle:  # a torn write: the footer is gone
        handle.truncate(100)
    time_range = (D1, D1 + timedelta(days=3))
    with Client(store=plant.root, tenant=tenant, allow_source=False) as days:
        names = [tag.name for tag in days.get_tags()][:5]
        want = {name: days.get_spans(name, time_range) for name in names}
    client = Client(store=tmp_path, tenant=tenant, allow_source=False)
    assert {name: client.get_spans(name, time_range) for name in names} == want


def test_a_copy_leaves_the_shared_footer_cache_as_it_was(plant, tmp_path, monkeypatch):
    """A month copy reads each day file many times (once per chunk of tags) from files it holds
    open itself: the day footers must not fill the read API's cache, where a backfill of a
    year kept hundreds of MB of them for reads that never came."""
    from tagflow.io_managers.compaction import compact_month

    tenant = plant.tenants[0]
    copy_days(plant.root, tmp_path, tenant, DAYS)
    cached: list[str] = []
    store = DatasetStore(tmp_path)
    monkeypatch.setattr(store.footers, "put", lambda key, footer: cached.append(key[0]))
    names = store.read("tags", tenant)
    for dataset in COMPACTED_DATASETS:
        staged = compact_month(store, dataset, tenant, MARCH, names)
        assert staged is not None and staged.rows > 0
        staged.discard()
    assert not [path for path in cached if "date=" in path]


@pytest.fixture(scope="module")
def two_months(pg_url, admin_conn, tmp_path_factory):
    """A tenant of 36 tags over 2026-01-30..02-02, materialised: (its tenant, the store of its
    days, the store with January and February copied)."""
    tenant = unique_tenant_name("months")
    generate_plant(
        pg_url, [tenant], tags=36, days=4, start=date(2026, 1, 30), seed=3, rows_per_tag_day=40
    )
    days_root = tmp_path_factory.mktemp("two-months-days")
    copied = tmp_path_factory.mktemp("two-months-copied")
    instance = dg.DagsterInstance.ephemeral()
    runs = materialize_days(
        tenant, date(2026, 1, 30), date(2026, 2, 3), instance,
        Settings(source_url=pg_url, store=str(days_root)),
    )  # fmt: skip
    assert all(run.success for run in runs)
    days = [date(2026, 1, 30) + timedelta(days=k) for k in range(4)]
    copy_days(days_root, copied, tenant, days)
    months = [date(2026, 1, 1), date(2026, 2, 1)]
    runs = copy_months(tenant, months, instance, Settings(source_url=pg_url, store=str(copied)))
    assert all(run.success for run in runs)
    yield tenant, days_root, copied
    drop_tenant(admin_conn, tenant)


def test_a_read_over_two_month_copies_answers_as_the_days(two_months, monkeypatch):
    """The copies of a read over months are read concurrently: every answer is still the days'
    answer, and each month's copy was read."""
    tenant, days_root, copied = two_months
    reads: list[str] = []  # "dataset month" of each read of a copy
    read = DatasetStore.read_month_rows

    def spy(self, dataset, tenant, month, *args, **kwargs):
        reads.append(f"{dataset} {month.isoformat()}")
        return read(self, dataset, tenant, month, *args, **kwargs)

    monkeypatch.setattr(DatasetStore, "read_month_rows", spy)
    start = datetime(2026, 1, 30, 13, 7, 30, 500_000, tzinfo=UTC)
    time_range = (start, start + timedelta(days=3))
    with Client(store=days_root, tenant=tenant, allow_source=False) as days:
        names = [tag.name for tag in days.get_tags()]
        want = all_answers(days, names, time_range)
    day_reads = datasets_read(monkeypatch, "read_tag_rows")
    with Client(store=copied, tenant=tenant, allow_source=False) as copies:
        got = all_answers(copies, names, time_range)
    assert_same_answers(got, want)
    assert {read.split()[1] for read in reads} == {"2026-01-01", "2026-02-01"}
    # Each month's copy answered its days: only the first day's carry-in came from a day file.
    assert set(day_reads) <= {"carry_in"}
