"""Reads of a few tags of one partition file, for the read API: the file's footer and tag
directory are parsed once and kept in the caller's FooterCache by file identity (a rewritten
partition is a new file, so it is parsed afresh), and only the row groups holding the tags are
decoded. A footer is only ever used with the file it was read from, even when a publish
replaces the file meanwhile. The cache belongs to whoever reads (the read engine holds one for
all its readers); this module keeps no state of its own."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tagflow.io_managers.day_publish import publish_of
from tagflow.io_managers.tag_directory import TagDirectory, tag_id_column

# Memory for parsed footers. A parsed footer takes about 9 times its serialized size (20 days'
# footers of 1-minute samples of 2,000 tags: 16 MiB serialized, 143 MiB in memory), so this
# holds about two months of day footers of one such dataset, or nine of its month copies'.
FOOTER_CACHE_BYTES = 512 * 1024 * 1024
PARSED_PER_SERIALIZED_BYTE = 9

# Tag ids a read asks for: a list, or the array a reader already holds.
TagIds = Sequence[int] | np.ndarray


@dataclass(frozen=True)
class Footer:
    metadata: pq.FileMetaData
    directory: TagDirectory | None
    # The day's publish id stamped in the file (day_publish), None if it has none.
    publish: str | None = None
    # (size, mtime) of the local file this footer was read from; None where unknown.
    identity: tuple[int, int] | None = None
    # Per time column: each row group's (min, max) in µs, read from its statistics once.
    _bounds: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def of(cls, metadata: pq.FileMetaData, key: tuple | None = None) -> Footer:
        """The footer of a file whose _file_identity is `key` (None: not known)."""
        group_rows = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
        directory = TagDirectory.of(metadata.metadata, group_rows)
        identity = None if key is None else (key[3], key[4])
        return cls(metadata, directory, publish_of(metadata.metadata), identity)

    def groups_meeting(self, column: str, window_us: tuple[int, int]) -> np.ndarray:
        """Mask of the row groups whose `column` statistics meet [low, high); a group
        without statistics always does."""
        if column not in self._bounds:
            index = self.metadata.schema.names.index(column)
            group_lows, group_highs = [], []
            for group in range(self.metadata.num_row_groups):
                stats = self.metadata.row_group(group).column(index).statistics
                known = stats is not None and stats.has_min_max
                group_lows.append(stats.min_raw if known else np.iinfo(np.int64).min)
                group_highs.append(stats.max_raw if known else np.iinfo(np.int64).max)
            self._bounds[column] = (
                np.asarray(group_lows, np.int64),
                np.asarray(group_highs, np.int64),
            )
        lows, highs = self._bounds[column]
        low, high = window_us
        return (highs >= low) & (lows < high)


class FooterCache:
    """A thread-safe LRU of footers, bounded by the memory they take once parsed (estimated
    from their serialized size: counting only that, a 256 MB cache held 2.2 GB)."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[tuple, Footer] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple) -> Footer | None:
        with self._lock:
            footer = self._entries.get(key)
            if footer is not None:
                self._entries.move_to_end(key)
            return footer

    def put(self, key: tuple, footer: Footer) -> None:
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = footer
            self._bytes += _parsed_bytes(footer)
            while self._bytes > self._max_bytes and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= _parsed_bytes(dropped)


def _parsed_bytes(footer: Footer) -> int:
    return footer.metadata.serialized_size * PARSED_PER_SERIALIZED_BYTE


@dataclass(frozen=True)
class Window:
    """Rows wanted only where `column` (a timestamp) lies in [low, high) µs."""

    column: str
    span_us: tuple[int, int]


def read_file(
    footers: FooterCache,
    file: str | BinaryIO,
    tag_ids: TagIds | None,
    columns: Sequence[str],
    schema: pa.Schema,
    before_decoding: Callable[[int], None] | None = None,
    window: Window | None = None,
    footer_seen: Callable[[Footer], None] | None = None,
) -> pa.Table:
    """The rows of `tag_ids` (all if None) of a file, `columns` only, in file order; with a
    `window`, only the row groups that may hold rows in it (callers filter the rows).
    `footer_seen` is given the footer of the very file decoded, before decoding. `file` is a
    local path (its footer kept in `footers` for the next read) or an open file (an object
    store's, its footer parsed each time). FileNotFoundError if there is no file."""
    with _opened(footers, file) as (parquet, footer):
        if footer_seen is not None:
            footer_seen(footer)
        return _read(parquet, footer, tag_ids, columns, schema, before_decoding, window)


@contextmanager
def _opened(footers: FooterCache, file: str | BinaryIO) -> Iterator[tuple[pq.ParquetFile, Footer]]:
    """The open Parquet file and its footer."""
    if not isinstance(file, str):
        with pq.ParquetFile(file) as parquet:
            yield parquet, Footer.of(parquet.metadata)
        return
    while True:
        key = _file_identity(file)
        footer = footers.get(key)
        with pq.ParquetFile(file, metadata=None if footer is None else footer.metadata) as parquet:
            if _same_file(file, key):
                if footer is None:
                    footer = Footer.of(parquet.metadata, key)
                    footers.put(key, footer)
            elif footer is None:
                footer = Footer.of(parquet.metadata)  # the opened file's own, whichever it is
            else:
                # Replaced between the stat and the open: the cached footer is another file's.
                continue
            yield parquet, footer
            return


class OpenFile:
    """A local partition file held open for many reads of a few tags each (a month copy reads
    each day once per chunk of tags): its footer parsed once and kept out of the shared cache,
    which a month's day footers would otherwise fill (and keep) for reads that will not come.
    `identity` is the (size, mtime) of the very file opened. FileNotFoundError if none."""

    def __init__(self, path: str) -> None:
        key = _file_identity(path)
        self._parquet = pq.ParquetFile(path)
        if not _same_file(path, key):  # replaced while it was opened: open the new one
            self._parquet.close()
            key = _file_identity(path)
            self._parquet = pq.ParquetFile(path)
            if not _same_file(path, key):
                self._parquet.close()
                raise FileNotFoundError(path)
        self.footer = Footer.of(self._parquet.metadata, key)
        self.identity = (key[3], key[4])

    def read(self, tag_ids: TagIds | None, columns: Sequence[str], schema: pa.Schema) -> pa.Table:
        """The rows of `tag_ids` (all if None), `columns` only, in file order."""
        return _read(self._parquet, self.footer, tag_ids, columns, schema, None, None)

    def close(self) -> None:
        self._parquet.close()


def footer_local(footers: FooterCache, path: str) -> Footer:
    """The footer of a local file, cached in `footers` like the reads'; FileNotFoundError if
    none."""
    key = _file_identity(path)
    footer = footers.get(key)
    if footer is None:
        footer = Footer.of(pq.read_metadata(path), key)
        if not _same_file(path, key):
            # Replaced while it was read: which file's footer this is is not known.
            return Footer.of(footer.metadata)
        footers.put(key, footer)
    return footer


def _file_identity(path: str) -> tuple:
    """A cached footer's key: a rewritten file (a rename over it, or a change in place) gets
    another inode, size or mtime; FileNotFoundError if there is no file."""
    stat = os.stat(path)
    return (path, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _same_file(path: str, key: tuple) -> bool:
    """Whether `path` is still the file of identity `key`: a file opened between two stats
    that agree is that file (a publish only ever puts a new file in place)."""
    try:
        return _file_identity(path) == key
    except FileNotFoundError:
        return False


def _read(
    parquet: pq.ParquetFile,
    footer: Footer,
    tag_ids: TagIds | None,
    columns: Sequence[str],
    schema: pa.Schema,
    before_decoding: Callable[[int], None] | None,
    window: Window | None,
) -> pa.Table:
    out_schema = pa.schema([schema.field(name) for name in columns])
    directory = footer.directory
    if directory is None:
        if before_decoding is not None:
            before_decoding(footer.metadata.num_rows)
        return _read_filtered(parquet, tag_ids, columns, out_schema)
    allowed = None if window is None else footer.groups_meeting(window.column, window.span_us)
    if tag_ids is None and allowed is None:
        groups = list(range(footer.metadata.num_row_groups))
        ids, counts = runs_in_file_order(directory)
        take = None
    else:
        if tag_ids is None:
            ids, counts = runs_in_file_order(directory)
            firsts = np.sort(directory.first_row)
        else:
            ids, firsts, counts = directory.runs_of(np.asarray(tag_ids, dtype=np.int64))
        groups, take, counts = directory.plan(firsts, counts, allowed)
    if not groups:
        return out_schema.empty_table()
    if before_decoding is not None:
        before_decoding(int(counts.sum()))
    # One reader thread per file: the read API reads many files at once, and Arrow's own
    # threads cost more than they save on groups of a few thousand rows.
    decoded = [name for name in columns if name != "tag_id"]
    table = parquet.read_row_groups(groups, columns=decoded, use_threads=False)
    if take is not None and _is_range(take):
        table = table.slice(int(take[0]), len(take))  # one run of rows: no copy
    elif take is not None:
        table = table.take(pa.array(take))
    if "tag_id" in columns:
        table = table.append_column("tag_id", tag_id_column(ids, counts))
    return table.select(list(columns)).cast(out_schema)


def runs_in_file_order(directory: TagDirectory) -> tuple[np.ndarray, np.ndarray]:
    """Every run's tag id and row count, in file order."""
    order = np.argsort(directory.first_row, kind="stable")
    return directory.sorted_ids[order], directory.rows[order]


def _is_range(positions: np.ndarray) -> bool:
    """Whether `positions` (rising) are consecutive."""
    return len(positions) > 0 and int(positions[-1]) - int(positions[0]) == len(positions) - 1


def _read_filtered(
    parquet: pq.ParquetFile,
    tag_ids: TagIds | None,
    columns: Sequence[str],
    out_schema: pa.Schema,
) -> pa.Table:
    """A file written before tag directories: every row group read, filtered by tag_id."""
    read_columns = list(columns) if "tag_id" in columns else [*columns, "tag_id"]
    # On this thread, like the reads above: `parquet` may be an object store's Python file,
    # whose buffers Arrow's threads would release later (dataset_store.DatasetStore.read).
    table = parquet.read(columns=read_columns, use_threads=False)
    if tag_ids is not None:
        wanted = pa.array(sorted(set(tag_ids)), pa.int32())
        table = table.filter(pc.is_in(table.column("tag_id"), value_set=wanted))
    return table.select(list(columns)).cast(out_schema)
