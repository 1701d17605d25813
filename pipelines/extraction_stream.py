"""A tenant-day's transitions streamed from the source chunk by chunk: the extraction stage of
the `transitions` asset, without Dagster, so the end-to-end benchmark runs the same code."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pyarrow as pa

from source.extract import stream_day_chunks
from tagflow.prefetch import prefetch
from transforms.chunks import plan_id_chunks
from transforms.transitions import resolve_rows

COUNTS = ("rows_in", "duplicates_dropped", "orphans_skipped")


def resolved_day_chunks(
    url: str,
    tenant: str,
    tags: pa.Table,
    day_start: datetime,
    day_end: datetime,
    expected_rows: int,
    counts: dict[str, int],
) -> Iterator[pa.Table]:
    """The day's transitions, a chunk of tags (`tags` is in name order) at a time, the next
    chunk read from the source while this one is resolved and written; adds the resolution
    counts to `counts` as it goes. `expected_rows` (the day's row count) sizes the chunks."""
    chunks = plan_id_chunks(tags.column("tag_id").to_pylist(), expected_rows)
    counts.update(dict.fromkeys(COUNTS, 0))
    for raw in prefetch(stream_day_chunks(url, tenant, day_start, day_end, chunks)):
        kept, stats = resolve_rows(raw, tags)
        for name in COUNTS:
            counts[name] += stats[name]
        yield kept
