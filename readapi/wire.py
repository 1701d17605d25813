"""What travels between the HTTP service and the client: Arrow IPC streams (exact types, the
client's format) and JSON (for people and curl), plus the query-string forms of arguments.

The service writes a large answer a batch of rows at a time (`ipc_chunks`, `json_record_chunks`,
`json_column_chunks`), so the encoded body never exists whole in its memory: a batch is about
`BATCH_BYTES` of Arrow data, and the pieces are sent in chunks of about `CHUNK_BYTES`. An answer
that fits in one chunk (`sent_whole`) is encoded the same way and sent in one piece. The
bytes are those of encoding the whole table at once (JSON), or an IPC stream of the same
schema and rows in several record batches (Arrow), so a client decodes the same table.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

ARROW_STREAM = "application/vnd.apache.arrow.stream"
JSON = "application/json"
# The answer formats a read may ask for: JSON records (or the wide form of bucketed reads), an
# Arrow IPC stream, or JSON columns (one array per column; see json_columnar_chunks).
FORMATS = ("json", "arrow", "columns")
# The tenant a request is for; optional, since a key opens exactly one tenant anyway. Sent by
# the client so that a key used against the wrong tenant fails instead of reading its own.
TENANT_HEADER = "X-Tagflow-Tenant"

# Arrow data per record batch of an IPC answer; a JSON answer converts a sixteenth of that at a
# time, since its rows as Python objects take about twenty times their Arrow bytes.
BATCH_BYTES = 4 << 20
JSON_BATCH_BYTES = BATCH_BYTES // 16
# Bytes handed to the server per write: small answers go out in one piece, large ones in
# pieces of about this size (each one a hop to a worker thread and a socket write).
CHUNK_BYTES = 1 << 20
# The rendering of FastAPI's JSONResponse, so a streamed answer has the same bytes.
_JSON_TEXT: dict[str, Any] = {
    "ensure_ascii": False,
    "allow_nan": False,
    "indent": None,
    "separators": (",", ":"),
}


def sent_whole(table: pa.Table, arrow: bool) -> bool:
    """Whether an answer is small enough to encode whole and send in one piece: its Arrow data
    fits in one chunk (in a sixteenth of one as JSON, whose Python rows are larger)."""
    return table.nbytes <= (CHUNK_BYTES if arrow else CHUNK_BYTES // 16)


def rows_per_batch(table: pa.Table, batch_bytes: int) -> int:
    """Rows of `table` that hold about `batch_bytes` of Arrow data (at least one)."""
    if table.num_rows == 0:
        return 1
    return max(1, min(table.num_rows, batch_bytes * table.num_rows // max(table.nbytes, 1)))


class _Pieces:
    """A write-only file that keeps what is written until it is taken (the IPC writer's sink)."""

    closed = False

    def __init__(self) -> None:
        self._parts: list[Any] = []
        self.size = 0

    def write(self, data: Any) -> int:
        # The writer hands over bytes and Arrow buffers; a buffer keeps its memory alive, so
        # it is joined (copied once) only when taken.
        self._parts.append(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        self.size = 0
        return data


def ipc_chunks(table: pa.Table, batch_bytes: int = BATCH_BYTES) -> Iterator[bytes]:
    """The Arrow IPC stream of `table`: its schema, its rows in record batches of about
    `batch_bytes`, then the end-of-stream marker, yielded in chunks of about CHUNK_BYTES."""
    sink = _Pieces()
    with ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=rows_per_batch(table, batch_bytes)):
            writer.write_batch(batch)
            if sink.size >= CHUNK_BYTES:
                yield sink.take()
    yield sink.take()


def decode_ipc(data: bytes) -> pa.Table:
    with ipc.open_stream(pa.py_buffer(data)) as reader:
        return reader.read_all()


def _jsonable(value: Any) -> Any:
    """JSON has no NaN or infinities and no datetimes: non-finite floats become the strings
    'NaN', 'Infinity', '-Infinity' (a NaN run is a real value, distinct from null) and times
    ISO 8601 strings with offset."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _json_list_items(items: list[Any]) -> str:
    """`items` as the inside of a JSON array (no brackets)."""
    return json.dumps(items, **_JSON_TEXT)[1:-1]


def _json_array(batches: Iterable[list[Any]]) -> Iterator[str]:
    """One JSON array of the items of every batch, as text pieces."""
    yield "["
    first = True
    for items in batches:
        if items:
            yield _json_list_items(items) if first else "," + _json_list_items(items)
            first = False
    yield "]"


def _chunked(pieces: Iterable[str]) -> Iterator[bytes]:
    """UTF-8 of the text pieces, joined into chunks of about CHUNK_BYTES."""
    held: list[bytes] = []
    size = 0
    for piece in pieces:
        data = piece.encode("utf-8")
        held.append(data)
        size += len(data)
        if size >= CHUNK_BYTES:
            yield b"".join(held)
            held, size = [], 0
    if held:
        yield b"".join(held)


def json_record_chunks(table: pa.Table, batch_bytes: int = JSON_BATCH_BYTES) -> Iterator[bytes]:
    """`[{column: value, ...}, ...]`, one object per row (tags, spans, metric data), converted a
    batch of rows at a time."""
    batches = table.to_batches(max_chunksize=rows_per_batch(table, batch_bytes))
    records = (
        [{k: _jsonable(v) for k, v in row.items()} for row in batch.to_pylist()]
        for batch in batches
    )
    yield from _chunked(_json_array(records))


def json_column_chunks(table: pa.Table, batch_bytes: int = JSON_BATCH_BYTES) -> Iterator[bytes]:
    """`{"columns": [...], "rows": [[...], ...]}` for wide tables, whose column names are tag
    names and may repeat or collide with JSON object keys; rows converted a batch at a time."""

    def rows() -> Iterator[list[list[Any]]]:
        for batch in table.to_batches(max_chunksize=rows_per_batch(table, batch_bytes)):
            columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            yield [[_jsonable(v) for v in row] for row in zip(*columns, strict=True)]

    head = '{"columns":' + json.dumps(list(table.column_names), **_JSON_TEXT) + ',"rows":'
    yield from _chunked(itertools.chain([head], _json_array(rows()), ["}"]))


def json_columnar_chunks(table: pa.Table, batch_bytes: int = JSON_BATCH_BYTES) -> Iterator[bytes]:
    """`{"columns": [...], "data": [[...], ...]}`: the column names, then one array per column
    holding the same values as the records form (times as ISO 8601 with offset, non-finite
    floats as strings), converted a batch of a column at a time and whole columns at once:
    no Python object per row, so it is the cheapest JSON of a long answer."""

    def columns() -> Iterator[str]:
        yield '{"columns":' + json.dumps(list(table.column_names), **_JSON_TEXT) + ',"data":['
        rows = rows_per_batch(table, batch_bytes)
        for index, column in enumerate(table.columns):
            if index:
                yield ","
            batches = (
                _jsonable_values(column.slice(start, rows))
                for start in range(0, table.num_rows, rows)
            )
            yield from _json_array(batches)
        yield "]}"

    yield from _chunked(columns())


def _jsonable_values(column: pa.ChunkedArray) -> list[Any]:
    """`column`'s values as _jsonable makes each one, converted a whole column at a time."""
    kind = column.type
    if pa.types.is_timestamp(kind) and kind.tz in ("UTC", "+00:00"):
        # datetime.isoformat of a UTC time: microseconds only where there are some.
        text = pc.strftime(column, format="%Y-%m-%dT%H:%M:%S")
        text = pc.replace_substring_regex(text, pattern=r"\.000000$", replacement="")
        return pc.binary_join_element_wise(text, "+00:00", "").to_pylist()
    values = column.to_pylist()
    if pa.types.is_floating(kind) and len(values):
        numbers = column.to_numpy(zero_copy_only=False)
        for at in np.flatnonzero(~np.isfinite(numbers) & column.is_valid().to_numpy()).tolist():
            values[at] = _jsonable(values[at])
    elif pa.types.is_timestamp(kind):
        values = [_jsonable(value) for value in values]
    return values
