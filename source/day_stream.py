"""A tenant-day's transitions streamed from the source chunk by chunk: the extraction stage of
the `transitions` asset, without Dagster, so the end-to-end benchmark runs the same code.

The day is read in one streaming scan (what the source serves fastest: its time index, in
table order), and each batch is split by chunk of tags into local spill files; the chunks are
then read back one at a time, in tag-name order, and resolved. Memory holds one batch while
reading and one chunk while resolving; the spill holds the day's raw rows on local disk
(about 25 bytes a row, in TMPDIR) for the length of the stage. Reading each chunk with its
own query instead costs a scan of the (tag, time) index per tag with random heap reads:
10x the single scan at 30 M rows.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import datetime

import numpy as np
import pyarrow as pa

from tagflow.schemas.arrow import RAW_ROWS
from tagflow.source.extract import stream_day_rows
from tagflow.transforms.chunks import plan_id_chunks
from tagflow.transforms.transitions import resolve_rows

COUNTS = ("rows_in", "duplicates_dropped", "orphans_skipped")


class _ChunkIndex:
    """Which chunk a tag id belongs to; ids missing from the tag list go to a last chunk."""

    def __init__(self, id_chunks: list[list[int]]) -> None:
        ids = np.array([i for chunk in id_chunks for i in chunk], dtype=np.int64)
        chunk = np.repeat(np.arange(len(id_chunks)), [len(c) for c in id_chunks])
        order = np.argsort(ids, kind="stable")
        self._ids, self._chunk = ids[order], chunk[order]
        self.count = len(id_chunks) + 1

    def of(self, tag_ids: np.ndarray) -> np.ndarray:
        unknown = self.count - 1
        if not len(self._ids):
            return np.full(len(tag_ids), unknown)
        at = np.searchsorted(self._ids, tag_ids).clip(max=len(self._ids) - 1)
        return np.where(self._ids[at] == tag_ids, self._chunk[at], unknown)


def _spill(batches: Iterator[pa.RecordBatch], index: _ChunkIndex, folder: str) -> list[str]:
    """Write each batch's rows to the spill file of their chunk; return the files by chunk."""
    paths = [os.path.join(folder, f"chunk-{k}.arrow") for k in range(index.count)]
    writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
    try:
        for batch in batches:
            chunk = index.of(batch.column("tag_id").to_numpy(zero_copy_only=False))
            order = np.argsort(chunk, kind="stable")
            sorted_chunk = chunk[order]
            edges = np.flatnonzero(np.diff(sorted_chunk)) + 1
            for lo, hi in zip(np.r_[0, edges], np.r_[edges, len(order)], strict=True):
                k = int(sorted_chunk[lo])
                if k not in writers:
                    writers[k] = pa.ipc.new_file(paths[k], RAW_ROWS)
                writers[k].write_batch(batch.take(pa.array(order[lo:hi])))
    finally:
        for writer in writers.values():
            writer.close()
    return paths


def resolved_day_chunks(
    url: str,
    tenant: str,
    tags: pa.Table,
    day_start: datetime,
    day_end: datetime,
    expected_rows: int,
    counts: dict[str, int],
) -> Iterator[pa.Table]:
    """The day's transitions, a chunk of tags (`tags` is in name order) at a time, then
    nothing for the rows of unknown tags (counted as orphans); adds the resolution counts to
    `counts` as it goes. `expected_rows` (the day's row count) sizes the chunks."""
    id_chunks = plan_id_chunks(tags.column("tag_id").to_pylist(), expected_rows)
    index = _ChunkIndex(id_chunks)
    counts.update(dict.fromkeys(COUNTS, 0))
    with tempfile.TemporaryDirectory(prefix="tagflow-day-") as folder:
        paths = _spill(stream_day_rows(url, tenant, day_start, day_end), index, folder)
        for path in paths:
            if not os.path.exists(path):
                continue
            with pa.OSFile(path) as source:
                raw = pa.ipc.open_file(source).read_all()
            kept, stats = resolve_rows(raw, tags)
            del raw
            for name in COUNTS:
                counts[name] += stats[name]
            if kept.num_rows:
                yield kept
