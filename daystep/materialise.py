"""What the day asset runs, without Dagster: the tenant's tag list staged, then each day
streamed from the source in one scan (source.day_stream), run through the day step
(daystep.run) into the audited writer, and returned as staged partitions with the fingerprint
of what was read; nothing is published here.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from concurrent.futures import Future
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import date

import pyarrow as pa

from tagflow.daystep.derived import HistoryOpener, derived_plan
from tagflow.daystep.run import run_day
from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.io_managers.day_writer import DayWriter
from tagflow.io_managers.partition_writer import StagedPartition
from tagflow.schemas.arrow import TAGS_DATASET, conform
from tagflow.schemas.dataset_checks import audit_table
from tagflow.schemas.registry import DATED
from tagflow.source.day_stream import RawChunk, raw_day_chunks
from tagflow.source.derived_history import SourceHistory
from tagflow.source.fingerprints import DayFingerprint, RowsFingerprint, stream_fingerprint
from tagflow.source.tenant_source import TenantSource
from tagflow.time_range import day_bounds
from tagflow.timing import Seconds, added, timed
from tagflow.transforms.derived.day import DerivedPlan
from tagflow.transforms.derived.definitions import TenantDerivedTags
from tagflow.transforms.tag_order import TagOrder


def materialise_day(
    source: TenantSource,
    store: DatasetStore,
    tenant: str,
    day: date,
    tags: pa.Table,
    derived: DerivedPlan | None = None,
) -> tuple[dict[str, StagedPartition], DayFingerprint]:
    """Every dated dataset of one tenant-day staged (audited, not yet published), and the
    fingerprint of what was read; with the tenant's `derived` tags, theirs too."""
    with closing(materialise_days(source, store, tenant, [day], tags, derived)) as days:
        return next(days)


def materialise_days(
    source: TenantSource,
    store: DatasetStore,
    tenant: str,
    days: list[date],
    tags: pa.Table,
    derived: DerivedPlan | None = None,
) -> Generator[tuple[dict[str, StagedPartition], DayFingerprint]]:
    """materialise_day of each of `days` in turn, the same files, with the next day's read
    begun while this day's last chunks are audited and written: in a range run the source's
    scan and the writers' drain, each of which left a core idle, overlap."""
    order = TagOrder.of(tags)
    read = _DayRead.open(source, tenant, days[0], order, derived)
    upcoming: _DayRead | None = None
    try:
        for following in [*days[1:], None]:
            seconds: Seconds = {}
            writer = DayWriter(store, tenant, read.day, *day_bounds(read.day))
            try:
                run = run_day(
                    tenant, read.day, order, read.raw_carry_in, read.chunks(), writer,
                    derived=derived, history=_history(source, tenant), seconds=seconds,
                )  # fmt: skip
                if following is not None:
                    upcoming = _DayRead.open(source, tenant, following, order, derived)
                    upcoming.start()
                with timed(seconds, "finish_s"):
                    staged = writer.finish(list(DATED), run.counts, read.rows.rows)
            except BaseException:
                writer.discard()
                raise
            finally:
                writer.close()
            fingerprint = stream_fingerprint(
                read.rows, read.raw_carry_in, tags, run.derived_version
            )
            timings = {
                name: round(value, 3) for name, value in added(seconds, writer.seconds).items()
            }
            staged["transitions"].metadata |= {
                **run.counts, "source_version": fingerprint.version, **timings
            }  # fmt: skip
            yield staged, fingerprint
            if upcoming is not None:
                read, upcoming = upcoming, None
    finally:
        if upcoming is not None:
            upcoming.abandon()


@dataclass
class _DayRead:
    """One day's read of the source: its carry-in, and its chunks, whose first (the whole
    scan, spilled by chunk) can be fetched ahead on a thread of its own."""

    day: date
    raw_carry_in: pa.Table
    rows: RowsFingerprint
    _chunks: Generator[RawChunk]
    _first: Future[RawChunk | None] | None = None

    @classmethod
    def open(
        cls,
        source: TenantSource,
        tenant: str,
        day: date,
        order: TagOrder,
        derived: DerivedPlan | None,
    ) -> _DayRead:
        day_start, day_end = day_bounds(day)
        raw_carry_in = source.read_carry_in(tenant, day_start)
        expected_rows = source.estimate_day_rows(tenant, day_start, day_end)
        rows = RowsFingerprint()
        chunks = raw_day_chunks(
            source.tenant_url(tenant), tenant, order.tag_id, day_start, day_end,
            expected_rows, rows, input_ids=None if derived is None else derived.input_ids,
            cuts=() if derived is None else derived.cuts(),
        )  # fmt: skip
        return cls(day, raw_carry_in, rows, chunks)

    def start(self) -> None:
        """Fetch the first chunk on a thread (a daemon: a command stopped meanwhile does not
        wait for the scan)."""

        first: Future[RawChunk | None] = Future()

        def fetch() -> None:
            try:
                first.set_result(next(self._chunks, None))
            except BaseException as error:  # raised where the chunks are taken
                first.set_exception(error)

        self._first = first
        threading.Thread(target=fetch, name="tagflow-next-day", daemon=True).start()

    def chunks(self) -> Iterator[RawChunk]:
        if self._first is not None:
            first = self._first.result()
            if first is None:
                return
            yield first
        yield from self._chunks

    def abandon(self) -> None:
        """Not to be read (a day before it failed): its scan ends on its own thread, and its
        spilled chunks go with the generator."""
        if self._first is None:
            self._chunks.close()


def _history(source: TenantSource, tenant: str) -> HistoryOpener:
    @contextmanager
    def opened() -> Iterator[SourceHistory]:
        with source.tenant_session(tenant) as conn:
            yield SourceHistory(conn, tenant)

    return opened


def stage_tags(
    source: TenantSource,
    store: DatasetStore,
    tenant: str,
    derived: TenantDerivedTags | None = None,
) -> tuple[pa.Table, StagedPartition, DerivedPlan | None]:
    """The tenant's tag list, sorted by name (codepoint order, as every dataset, for readers'
    row-group pruning), audited and staged, with the rows of its `derived` tags (the list
    returned holds the source tags only), and the plan of those derived tags. Its metadata
    counts the tenant's rows that no day holds (a time of ±infinity or NULL, DESIGN §2)."""
    tags = source.read_tags(tenant).sort_by("tag_name")
    # Every read of the source comes before the file is staged: a source lost in between
    # fails the run with nothing staged, where a staged file would be left behind.
    skipped = source.count_out_of_range(tenant)
    written = conform(tags, TAGS_DATASET)
    plan = derived_plan(derived, tags) if derived is not None else None
    if plan is not None:
        written = pa.concat_tables([written, plan.tags]).sort_by("tag_name")
    audit_table("tags", written)
    with store.stage("tags", tenant) as writer:
        writer.write(written)
        staged = writer.close()
    staged.metadata["out_of_range_skipped"] = skipped
    staged.metadata["derived_tags"] = 0 if plan is None else plan.tags.num_rows
    return tags, staged, plan
