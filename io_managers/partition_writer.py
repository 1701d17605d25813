"""Write–audit–publish of one partition file: tables are written as they come to a hidden
temporary name (hashing the bytes on their way to disk), and the file becomes visible under its
final name only when published, in one step: an atomic rename on a local root, a single PUT on
an object store. Until then readers see the previous file, or none."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from tagflow.io_managers.tag_directory import TagRuns, group_ends
from tagflow.schemas.arrow import conform
from tagflow.schemas.registry import Dataset

# Rows per row group, at most, cut at tag boundaries (tag_directory.group_ends): a reader of
# a few tags (the read API) decodes only the groups holding them. Reading one tag of 30 days
# of spans took 95 ms with 32 K-row groups and 25 ms with 4 K; 2 K saved little more for
# footers twice the size (a 2.9 M-row day of 1-minute samples: 1 MB of footer at 4 K).
ROW_GROUP_ROWS = 4096
# Prefix and suffix of every staged file: pyarrow.dataset ignores '.'-prefixed files and
# DuckDB's *.parquet globs do not match the suffix, so nothing reads an unfinished file.
TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"


def parquet_options(dataset: Dataset) -> dict:
    schema = dataset.schema
    return {
        "compression": "zstd",
        # Level 1 writes 1.75x faster than 3 for files 21 % larger (1 M-row day: 67 vs
        # 55 MiB); a day is written by the pipeline's critical path and read cheaply either way.
        "compression_level": 1,
        "write_statistics": True,
        # Dictionary pages pay off for repeated strings (tag names, states); on floats and
        # timestamps they are tried and abandoned, which tripled write time and grew files.
        "use_dictionary": [f.name for f in schema if pa.types.is_string(f.type)],
        # Times rise within a tag: delta encoding made a 10 M-row day's transitions 25 %
        # smaller (spans too) and wrote as fast. Every Parquet reader decodes it.
        "column_encoding": {
            f.name: "DELTA_BINARY_PACKED" for f in schema if pa.types.is_timestamp(f.type)
        },
        "sorting_columns": pq.SortingColumn.from_ordering(
            schema, [(key, "ascending") for key in dataset.sort_keys]
        ),
    }


class _HashingFile(io.RawIOBase):
    """A binary file that hashes and counts what passes through it (the content hash costs no
    second read of the file)."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "wb")  # noqa: SIM115  # closed by close()
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    # Narrower than RawIOBase.write's any-buffer: pyarrow hands it bytes-like objects only.
    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        written = self._file.write(data)
        self.digest.update(data)
        self.size += written
        return written

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        super().close()


@dataclass
class StagedPartition:
    """A complete partition file under its temporary name, not yet visible to readers."""

    dataset: str
    tenant: str
    day: date | None
    rows: int
    bytes: int
    sha256: str
    temp: str
    target: UPath
    # What the producer observed of the rows (tags, time range, resolution counts).
    metadata: dict[str, Any] = field(default_factory=dict)

    def publish(self) -> None:
        """Make the file the partition, replacing the previous one in one step."""
        if self.target.protocol in ("", "file", "local"):
            os.replace(self.temp, self.target.path)
            if self.day is not None:
                _touch(os.path.dirname(os.path.dirname(self.target.path)))
            return
        self.target.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.target.fs.put_file(self.temp, self.target.path)
        finally:
            os.unlink(self.temp)

    def discard(self) -> None:
        if os.path.exists(self.temp):
            os.unlink(self.temp)


def _touch(folder: str) -> None:
    """Move the tenant folder's mtime forward: readers' cached day listings compare it (a new
    file inside an existing date folder would not change it). Set exactly, strictly later than
    before: the clock the kernel stamps files with may not have moved since the last change."""
    before = os.stat(folder).st_mtime_ns
    later = max(time.time_ns(), before + 1)
    os.utime(folder, ns=(later, later))


class PartitionWriter:
    """Writes one partition's tables, in order, into a staged file. Used as a context
    manager, it discards the file if the block fails; `close` hands it over for publishing."""

    def __init__(
        self,
        dataset: Dataset,
        tenant: str,
        day: date | None,
        target: UPath,
        temp: str,
        group_rows: int | None = None,
        key_value: dict[bytes, bytes] | None = None,
    ) -> None:
        self._dataset, self._tenant, self._day = dataset, tenant, day
        self._target, self._temp = target, temp
        self._group_rows = group_rows or ROW_GROUP_ROWS
        self._key_value = key_value or {}
        self._sink = _HashingFile(temp)
        self._writer = pq.ParquetWriter(self._sink, dataset.schema, **parquet_options(dataset))
        self._runs = TagRuns()
        self.rows = 0

    @classmethod
    def staged_beside(
        cls,
        dataset: Dataset,
        tenant: str,
        day: date | None,
        target: UPath,
        group_rows: int | None = None,
        key_value: dict[bytes, bytes] | None = None,
    ) -> PartitionWriter:
        """A writer whose temporary file lies where it will be renamed to (a local root), or
        in the local temp folder (an object-store root, uploaded whole on publish)."""
        name = f"{TEMP_PREFIX}{target.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}"
        if target.protocol in ("", "file", "local"):
            os.makedirs(os.path.dirname(target.path), exist_ok=True)
            temp = os.path.join(os.path.dirname(target.path), name)
        else:
            temp = os.path.join(tempfile.gettempdir(), name)
        return cls(dataset, tenant, day, target, temp, group_rows, key_value)

    def write(self, table: pa.Table | pa.RecordBatch) -> None:
        schema = self._dataset.schema
        # conform: a tags table without the derived-tag columns is one of source tags only.
        table = conform(pa.table(table), schema)
        if not table.num_rows:
            return
        if "tag_id" not in schema.names:
            # No tags (the annotation exports): no tag directory, plain row groups.
            self._writer.write_table(table, row_group_size=self._group_rows)
            self.rows += table.num_rows
            return
        tag_ids = table.column("tag_id").to_numpy()
        self._runs.add(tag_ids)
        start = 0
        for end in group_ends(tag_ids, self._group_rows):
            self._writer.write_table(table.slice(start, end - start), row_group_size=end - start)
            start = end
        self.rows += table.num_rows

    def content_digest(self) -> str:
        """The sha256 of the row groups written so far: every write_table has reached the
        file whole, so this is the file less its footer (which only describes them)."""
        return self._sink.digest.copy().hexdigest()

    def close(self, key_value: dict[bytes, bytes] | None = None) -> StagedPartition:
        """Write the footer, with `key_value` beside the writer's own, and hand the file over."""
        metadata = {**self._runs.encode(), **self._key_value, **(key_value or {})}
        self._writer.add_key_value_metadata(metadata)
        self._writer.close()
        self._sink.close()
        return StagedPartition(
            dataset=self._dataset.name,
            tenant=self._tenant,
            day=self._day,
            rows=self.rows,
            bytes=self._sink.size,
            sha256=self._sink.digest.hexdigest(),
            temp=self._temp,
            target=self._target,
        )

    def discard(self) -> None:
        try:
            self._writer.close()
            self._sink.close()
        finally:
            if os.path.exists(self._temp):
                os.unlink(self._temp)

    def __enter__(self) -> PartitionWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is not None:
            self.discard()
