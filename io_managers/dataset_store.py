"""The dataset layout of DESIGN §3 and atomic Parquet reads and writes on any UPath root.

This is the only code that knows where a dataset partition lives:
``{root}/{dataset}/tenant={tenant}/date={YYYY-MM-DD}/part-0.parquet`` (``tags`` has no date level).
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from upath import UPath

from tagflow.errors import MissingPartition, TagflowError
from tagflow.io_managers.partition_writer import PartitionWriter, StagedPartition
from tagflow.names import validate_tenant_name
from tagflow.schemas.registry import DATASETS
from tagflow.schemas.registry import dataset as registered

PART_FILE = "part-0.parquet"
log = logging.getLogger(__name__)


class DatasetStore:
    """Reads and writes dataset partitions under one root (local path or object-store URL)."""

    def __init__(self, root: str | os.PathLike[str] | UPath) -> None:
        self.root = root if isinstance(root, UPath) else UPath(root)

    def __repr__(self) -> str:
        # The root can name a bucket or a private directory: keep it out of reprs and logs.
        return f"DatasetStore(protocol={self.root.protocol or 'file'!r})"

    @property
    def _is_local(self) -> bool:
        return self.root.protocol in ("", "file", "local")

    def partition_path(self, dataset: str, tenant: str, day: date | None = None) -> UPath:
        dated = registered(dataset).dated
        validate_tenant_name(tenant)
        base = self.root / dataset / f"tenant={tenant}"
        if not dated:
            return base / PART_FILE
        if not isinstance(day, date):
            raise TagflowError(f"dataset {dataset!r} is partitioned by date: a date is required")
        return base / f"date={day.isoformat()}" / PART_FILE

    def exists(self, dataset: str, tenant: str, day: date | None = None) -> bool:
        return self.partition_path(dataset, tenant, day).exists()

    def stage(self, dataset: str, tenant: str, day: date | None = None) -> PartitionWriter:
        """A writer of one partition to a staged file, published (replacing the partition in
        one step) only once its tables are written and checked; see PartitionWriter."""
        target = self.partition_path(dataset, tenant, day)
        if self._is_local:
            self._refuse_links(target)
        return PartitionWriter.staged_beside(registered(dataset), tenant, day, target)

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

    def parquet_glob(self, dataset: str) -> str:
        """A glob over every file of `dataset`, for DuckDB's read_parquet(hive_partitioning)."""
        suffix = "*/*/*.parquet" if registered(dataset).dated else "*/*.parquet"
        return str(self.root / dataset / suffix)

    def read(self, dataset: str, tenant: str, day: date | None = None) -> pa.Table:
        """One partition as a table of the dataset's schema; MissingPartition if absent."""
        path = self.partition_path(dataset, tenant, day)
        try:
            with path.open("rb") as handle:
                table = pq.read_table(handle)
        except FileNotFoundError:
            when = f" on {day.isoformat()}" if day is not None else ""
            raise MissingPartition(
                f"{dataset} for tenant {tenant!r}{when} has not been materialised"
            ) from None
        schema = DATASETS[dataset].schema
        return table.select(schema.names).cast(schema)

    def read_tag_rows(
        self,
        dataset: str,
        tenant: str,
        day: date | None,
        tag_names: Collection[str] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """The rows of `tag_names` (all tags if None) of one partition, only `columns` (all if
        None), in file order; MissingPartition if absent.

        For the read API: files are sorted by tag_name, so row groups whose tag_name
        statistics exclude every wanted name are not read at all, and footers of local files
        are cached (keyed by inode, size and mtime, so a rewritten partition is re-read)."""
        schema = DATASETS[dataset].schema
        names = list(columns) if columns is not None else schema.names
        out_schema = pa.schema([schema.field(name) for name in names])
        wanted = None if tag_names is None else sorted(set(tag_names))
        if wanted == []:
            return out_schema.empty_table()
        path = self.partition_path(dataset, tenant, day)
        read_columns = names if wanted is None or "tag_name" in names else [*names, "tag_name"]
        try:
            with self._open_parquet(path) as parquet:
                groups = _row_groups_holding(parquet.metadata, wanted)
                if not groups:
                    return out_schema.empty_table()
                table = parquet.read_row_groups(groups, columns=read_columns)
        except FileNotFoundError:
            when = f" on {day.isoformat()}" if day is not None else ""
            raise MissingPartition(
                f"{dataset} for tenant {tenant!r}{when} has not been materialised"
            ) from None
        if wanted is not None:
            table = table.filter(pc.is_in(table.column("tag_name"), value_set=pa.array(wanted)))
        return table.select(names).cast(out_schema)

    @contextmanager
    def _open_parquet(self, path: UPath) -> Iterator[pq.ParquetFile]:
        if not self._is_local:
            with path.open("rb") as handle, pq.ParquetFile(handle) as parquet:
                yield parquet
            return
        local = path.path
        stat = os.stat(local)
        key = (local, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        metadata = _FOOTERS.get(key)
        with pq.ParquetFile(local, metadata=metadata) as parquet:
            if metadata is None:
                _FOOTERS.put(key, parquet.metadata)
            yield parquet

    def iter_batches(self, dataset: str, tenant: str, day: date) -> Iterator[pa.RecordBatch]:
        """One partition's rows in file order, a row group at a time (memory holds one);
        MissingPartition if absent."""
        schema = DATASETS[dataset].schema
        path = self.partition_path(dataset, tenant, day)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise MissingPartition(
                f"{dataset} for tenant {tenant!r} on {day.isoformat()} has not been materialised"
            ) from None
        with handle, pq.ParquetFile(handle) as parquet:
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group, columns=schema.names).cast(schema)
                yield from table.to_batches()

    def read_days(self, dataset: str, tenant: str, days: Iterable[date]) -> pa.Table:
        """Several day partitions concatenated in day order."""
        tables = [self.read(dataset, tenant, day) for day in sorted(days)]
        if not tables:
            return DATASETS[dataset].schema.empty_table()
        return pa.concat_tables(tables)


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


class _FooterCache:
    """A small thread-safe LRU of Parquet footers (FileMetaData) of local files."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[tuple, pq.FileMetaData] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> pq.FileMetaData | None:
        with self._lock:
            metadata = self._entries.get(key)
            if metadata is not None:
                self._entries.move_to_end(key)
            return metadata

    def put(self, key: tuple, metadata: pq.FileMetaData) -> None:
        with self._lock:
            self._entries[key] = metadata
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


_FOOTERS = _FooterCache(4096)


def _row_groups_holding(metadata: pq.FileMetaData, wanted: list[str] | None) -> list[int]:
    """Row groups that may hold any of the sorted names `wanted` (all if None), judged by the
    tag_name min/max statistics; a group without statistics is always read."""
    groups = list(range(metadata.num_row_groups))
    if wanted is None:
        return groups
    column = metadata.schema.names.index("tag_name")
    kept = []
    for group in groups:
        stats = metadata.row_group(group).column(column).statistics
        if stats is None or not stats.has_min_max:
            kept.append(group)
            continue
        first = bisect.bisect_left(wanted, stats.min)
        if first < len(wanted) and wanted[first] <= stats.max:
            kept.append(group)
    return kept
