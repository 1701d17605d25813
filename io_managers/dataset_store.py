"""The dataset layout of DESIGN §3 and atomic Parquet reads and writes on any UPath root.

This is the only code that knows where a dataset partition lives:
``{root}/{dataset}/tenant={tenant}/date={YYYY-MM-DD}/part-0.parquet`` (``tags`` has no date level),
and where the read API's month copies live (io_managers/compaction.py):
``{root}/_compacted/{dataset}/tenant={tenant}/month={YYYY-MM}/part-0.parquet``, outside every
dataset's folder so that readers of the datasets never see them.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from tagflow.errors import MissingPartition, TagflowError
from tagflow.io_managers import partition_reader
from tagflow.io_managers.partition_writer import PartitionWriter, StagedPartition
from tagflow.io_managers.unreadable import UNREADABLE, corrupt_if_unreadable, corrupt_partition
from tagflow.names import validate_tenant_name
from tagflow.schemas.arrow import conform
from tagflow.schemas.registry import DATASETS
from tagflow.schemas.registry import dataset as registered

PART_FILE = "part-0.parquet"
COMPACTED = "_compacted"
TENANT_PREFIX = "tenant="
log = logging.getLogger(__name__)


class DatasetStore:
    """Reads and writes dataset partitions under one root (local path or object-store URL).
    Parsed footers of local files are kept in `footers` (the read engine shares one among its
    readers; by default each store has its own)."""

    def __init__(
        self,
        root: str | os.PathLike[str] | UPath,
        footers: partition_reader.FooterCache | None = None,
    ) -> None:
        self.root = root if isinstance(root, UPath) else UPath(root)
        # Asked hundreds of times per read call: a UPath computes each on every access.
        self._is_local = self.root.protocol in ("", "file", "local")
        self._root_path = self.root.path
        self.footers = (
            footers
            if footers is not None
            else partition_reader.FooterCache(partition_reader.FOOTER_CACHE_BYTES)
        )

    def __repr__(self) -> str:
        # The root can name a bucket or a private directory: keep it out of reprs and logs.
        return f"DatasetStore(protocol={self.root.protocol or 'file'!r})"

    def partition_path(self, dataset: str, tenant: str, day: date | None = None) -> UPath:
        return self.root.joinpath(*_partition_parts(dataset, tenant, day))

    def _local_file(self, dataset: str, tenant: str, day: date | None) -> str:
        """partition_path of a local root as a plain path: the read API asks for hundreds
        per call, and building UPaths cost more than reading some of the files."""
        return os.path.join(self._root_path, *_partition_parts(dataset, tenant, day))

    def exists(self, dataset: str, tenant: str, day: date | None = None) -> bool:
        return self.partition_path(dataset, tenant, day).exists()

    def stage(self, dataset: str, tenant: str, day: date | None = None) -> PartitionWriter:
        """A writer of one partition to a staged file, published (replacing the partition in
        one step) only once its tables are written and checked; see PartitionWriter."""
        target = self.partition_path(dataset, tenant, day)
        if self._is_local:
            self._refuse_links(target)
        return PartitionWriter.staged_beside(registered(dataset), tenant, day, target)

    def month_path(self, dataset: str, tenant: str, month: date) -> UPath:
        return self.root.joinpath(*_month_parts(dataset, tenant, month))

    def month_relation(self, dataset: str, tenant: str, month: date) -> str:
        """A month copy's folder relative to the root (the root may name a private place)."""
        return "/".join(_month_parts(dataset, tenant, month)[:-1])

    def stage_month(
        self, dataset: str, tenant: str, month: date, group_rows: int, key_value: dict[bytes, bytes]
    ) -> PartitionWriter:
        """A writer of one month copy, published like a partition (see stage)."""
        target = self.month_path(dataset, tenant, month)
        if self._is_local:
            self._refuse_links(target)
        return PartitionWriter.staged_beside(
            registered(dataset), tenant, None, target, group_rows, key_value
        )

    def day_identity(self, dataset: str, tenant: str, day: date) -> tuple[int, int] | None:
        """(size, mtime) of a local day partition, which a rewrite changes; None when it is
        missing or the store is not local (an identity would cost a request per file)."""
        if not self._is_local:
            return None
        try:
            stat = os.stat(self._local_file(dataset, tenant, day))
        except FileNotFoundError:
            return None
        return (stat.st_size, stat.st_mtime_ns)

    def day_footer(self, dataset: str, tenant: str, day: date) -> partition_reader.Footer | None:
        """The footer of a local day partition (cached), None when there is none."""
        if not self._is_local:
            return None
        try:
            with corrupt_if_unreadable(dataset, tenant, day):
                return partition_reader.footer_local(
                    self.footers, self._local_file(dataset, tenant, day)
                )
        except FileNotFoundError:
            return None

    def open_day(self, dataset: str, tenant: str, day: date) -> partition_reader.OpenFile | None:
        """A local day partition held open for many reads (close it after), None when it is
        missing or the store is not local."""
        if not self._is_local:
            return None
        try:
            with corrupt_if_unreadable(dataset, tenant, day):
                return partition_reader.OpenFile(self._local_file(dataset, tenant, day))
        except FileNotFoundError:
            return None

    def tag_rows(
        self, dataset: str, tenant: str, day: date, tag_ids: partition_reader.TagIds | None
    ) -> int | None:
        """Rows of `tag_ids` (all if None) in a local day partition, from its tag directory
        (the footer is cached): nothing is decoded. None if that cannot be known so."""
        footer = self.day_footer(dataset, tenant, day)
        if footer is None or footer.directory is None:
            return None
        if tag_ids is None:
            return footer.metadata.num_rows
        return int(footer.directory.runs_of(np.asarray(tag_ids, dtype=np.int64))[2].sum())

    def month_footer(
        self, dataset: str, tenant: str, month: date
    ) -> partition_reader.Footer | None:
        """The footer of a local month copy (cached), None when there is none."""
        if not self._is_local:
            return None
        try:
            with corrupt_if_unreadable(f"the {month:%Y-%m} copy of {dataset}", tenant, None):
                return partition_reader.footer_local(
                    self.footers, self._local_month(dataset, tenant, month)
                )
        except FileNotFoundError:
            return None

    def read_month_rows(
        self,
        dataset: str,
        tenant: str,
        month: date,
        tag_ids: partition_reader.TagIds | None,
        columns: Sequence[str],
        window: partition_reader.Window,
        before_decoding: Callable[[int], None] | None = None,
    ) -> pa.Table:
        """Like read_tag_rows, of a local month copy, decoding only row groups that meet the
        window (the rows outside it are the caller's to drop); MissingPartition if absent."""
        path = self._local_month(dataset, tenant, month)
        schema = DATASETS[dataset].schema
        try:
            with corrupt_if_unreadable(f"the {month:%Y-%m} copy of {dataset}", tenant, None):
                return partition_reader.read_file(
                    self.footers, path, tag_ids, columns, schema, before_decoding, window
                )
        except FileNotFoundError:
            raise MissingPartition(
                f"the {month:%Y-%m} copy of {dataset} for tenant {tenant!r} is gone"
            ) from None

    def _local_month(self, dataset: str, tenant: str, month: date) -> str:
        return os.path.join(self._root_path, *_month_parts(dataset, tenant, month))

    def _refuse_links(self, target: UPath) -> None:
        """A partition is written only inside the root and never through a symbolic link: a
        linked folder would let one store's run overwrite another's files."""
        root = os.path.abspath(self.root.path)
        folder = os.path.abspath(os.path.dirname(target.path))
        if os.path.commonpath([root, folder]) != root:
            raise TagflowError("a partition would be written outside the store root; refused")
        here = root
        for part in os.path.relpath(folder, root).split(os.sep):
            here = os.path.join(here, part)
            if os.path.islink(here):
                raise TagflowError(
                    "a partition folder of the store is a symbolic link; refused to write "
                    "through it (replace the link by a folder)"
                )

    def write(
        self,
        dataset: str,
        tenant: str,
        day: date | None,
        data: pa.Table | Iterable[pa.Table | pa.RecordBatch],
    ) -> StagedPartition:
        """Replace one partition with `data` (a table, or a stream of tables or batches written
        as they come, holding one at a time) and publish it; return what was published.

        Readers see either the previous complete file or the new one, never a partial file;
        a stream that fails part-way leaves the previous file in place."""
        with self.stage(dataset, tenant, day) as writer:
            for part in [data] if isinstance(data, pa.Table) else data:
                writer.write(part)
            staged = writer.close()
        try:
            staged.publish()
        finally:
            staged.discard()  # nothing is left behind if publishing failed
        return staged

    def verify(self, dataset: str, tenant: str, day: date | None, rows: int, sha256: str) -> str:
        """What is wrong with the published partition, against the row count and content hash
        recorded when it was written; '' when it is exactly that file."""
        path = self.partition_path(dataset, tenant, day)
        digest = hashlib.sha256()
        try:
            with path.open("rb") as handle:
                found = pq.ParquetFile(handle).metadata.num_rows
                handle.seek(0)
                while block := handle.read(1 << 22):
                    digest.update(block)
        except FileNotFoundError:
            return "the partition file is missing"
        except (OSError, pa.ArrowException):
            return "the partition file is not a readable Parquet file (truncated or corrupted)"
        if found != rows:
            return f"the file holds {found} rows where {rows} were written"
        if digest.hexdigest() != sha256:
            return "the file's content differs from what was written (replaced or corrupted)"
        return ""

    def materialised_days(self, dataset: str, tenant: str) -> list[date]:
        """Days of `tenant` for which `dataset` has a complete partition file."""
        if not registered(dataset).dated:
            raise TagflowError(f"dataset {dataset!r} is not partitioned by date")
        folder = self.partition_path(dataset, tenant, date(2000, 1, 1)).parent.parent
        if not folder.exists():
            return []
        days = []
        for child in folder.iterdir():
            day = _partition_day(child.name)
            if day is None:
                # A stray folder (a backup, an editor's copy) is no partition; say so, once.
                log.warning(
                    "ignoring %r in the %s dataset: not a date=YYYY-MM-DD folder",
                    child.name[:80],
                    dataset,
                )
                continue
            if (child / PART_FILE).exists():
                days.append(day)
        return sorted(days)

    def listing_version(self, dataset: str, tenant: str) -> int | None:
        """A token that changes whenever a day partition of `tenant`'s `dataset` is published
        or its folder removed (the tenant folder's mtime, which publishing touches), so a
        cached listing can be reused until then; None where it cannot be had for one local
        stat (object stores)."""
        if not self._is_local:
            return None
        folder = self.partition_path(dataset, tenant, date(2000, 1, 1)).parent.parent
        try:
            return os.stat(folder.path).st_mtime_ns
        except FileNotFoundError:
            return 0

    def partition_version(self, dataset: str, tenant: str, day: date | None = None) -> tuple | None:
        """A token that changes whenever the partition is replaced or removed (the file's
        identity); None on object stores, as above."""
        if not self._is_local:
            return None
        try:
            stat = os.stat(self._local_file(dataset, tenant, day))
        except FileNotFoundError:
            return ()
        return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def parquet_glob(self, dataset: str) -> str:
        """A glob over every file of `dataset`, for DuckDB's read_parquet(hive_partitioning)."""
        suffix = "*/*/*.parquet" if registered(dataset).dated else "*/*.parquet"
        return str(self.root / dataset / suffix)

    def read(self, dataset: str, tenant: str, day: date | None = None) -> pa.Table:
        """One partition as a table of the dataset's schema; MissingPartition if absent."""
        try:
            if self._is_local:
                # A native file: Arrow's threads may release a Python file object's buffers
                # after the read returned, which needs the GIL, and at interpreter exit that
                # aborts the process ("terminate called without an active exception": 4 exits
                # in 80 of a script reading the tag list through a Python file).
                with pq.ParquetFile(self._local_file(dataset, tenant, day)) as parquet:
                    table = parquet.read()
            else:
                with (
                    self.partition_path(dataset, tenant, day).open("rb") as handle,
                    pq.ParquetFile(handle) as parquet,
                ):
                    # On this thread only, for the reason above.
                    table = parquet.read(use_threads=False)
        except FileNotFoundError:
            raise _missing(dataset, tenant, day) from None
        except UNREADABLE as error:
            raise corrupt_partition(dataset, tenant, day, error) from None
        schema = registered(dataset).schema
        # conform: a tags file written before the derived-tag columns reads as source tags.
        return conform(table, schema)

    def read_tag_rows(
        self,
        dataset: str,
        tenant: str,
        day: date | None,
        tag_ids: partition_reader.TagIds | None = None,
        columns: Sequence[str] | None = None,
        before_decoding: Callable[[int], None] | None = None,
        footer_seen: Callable[[partition_reader.Footer], None] | None = None,
    ) -> pa.Table:
        """The rows of `tag_ids` (all tags if None) of one partition, only `columns` (all if
        None), in file order; MissingPartition if absent. For the read API: only the row
        groups holding the tags are decoded (see partition_reader), `before_decoding` is
        told how many rows that is first (to refuse a read too large to hold), and
        `footer_seen` is given the footer of the file read (its publish id)."""
        schema = DATASETS[dataset].schema
        names = list(columns) if columns is not None else schema.names
        try:
            if self._is_local:
                path = self._local_file(dataset, tenant, day)
                return partition_reader.read_file(
                    self.footers,
                    path,
                    tag_ids,
                    names,
                    schema,
                    before_decoding,
                    footer_seen=footer_seen,
                )
            with self.partition_path(dataset, tenant, day).open("rb") as handle:
                return partition_reader.read_file(
                    self.footers,
                    handle,
                    tag_ids,
                    names,
                    schema,
                    before_decoding,
                    footer_seen=footer_seen,
                )
        except FileNotFoundError:
            raise _missing(dataset, tenant, day) from None
        except UNREADABLE as error:
            raise corrupt_partition(dataset, tenant, day, error) from None


def tenant_folder(tenant: str) -> str:
    """The name of a tenant's folder in every dataset."""
    return f"{TENANT_PREFIX}{tenant}"


def partition_folder(dataset: str, tenant: str, day: date | None) -> str:
    """A partition's folder relative to the store root (`spans/tenant=T/date=D`): what Dagster
    records as the relation, since the root may name a private folder or a bucket."""
    return "/".join(_partition_parts(dataset, tenant, day)[:-1])


def _partition_parts(dataset: str, tenant: str, day: date | None) -> tuple[str, ...]:
    validate_tenant_name(tenant)
    base = (dataset, tenant_folder(tenant))
    if not registered(dataset).dated:
        return (*base, PART_FILE)
    if not isinstance(day, date):
        raise TagflowError(f"dataset {dataset!r} is partitioned by date: a date is required")
    return (*base, f"date={day.isoformat()}", PART_FILE)


def _month_parts(dataset: str, tenant: str, month: date) -> tuple[str, ...]:
    validate_tenant_name(tenant)
    if not registered(dataset).dated or not isinstance(month, date) or month.day != 1:
        raise TagflowError("a month copy is of a dated dataset and starts on a month's 1st")
    return (COMPACTED, dataset, tenant_folder(tenant), f"month={month:%Y-%m}", PART_FILE)


def _missing(dataset: str, tenant: str, day: date | None) -> MissingPartition:
    when = f" on {day.isoformat()}" if day is not None else ""
    return MissingPartition(f"{dataset} for tenant {tenant!r}{when} has not been materialised")


def _partition_day(folder_name: str) -> date | None:
    """The day a `date=YYYY-MM-DD` folder holds; None for any other name."""
    text = folder_name.removeprefix("date=")
    if text == folder_name or len(text) != 10:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return day if day.isoformat() == text else None
