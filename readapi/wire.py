"""What travels between the HTTP service and the client: Arrow IPC streams (exact types, the
client's format) and JSON (for people and curl), plus the query-string forms of arguments."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

ARROW_STREAM = "application/vnd.apache.arrow.stream"
JSON = "application/json"
# The tenant a request is for; optional, since a key opens exactly one tenant anyway. Sent by
# the client so that a key used against the wrong tenant fails instead of reading its own.
TENANT_HEADER = "X-Tagflow-Tenant"


def encode_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


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


def json_records(table: pa.Table) -> list[dict[str, Any]]:
    """One object per row (tags, spans, metric data)."""
    return [{k: _jsonable(v) for k, v in row.items()} for row in table.to_pylist()]


def json_columns(table: pa.Table) -> dict[str, Any]:
    """{"columns": [...], "rows": [[...], ...]} for wide tables, whose column names are tag
    names and may repeat or collide with JSON object keys."""
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    rows = [[_jsonable(v) for v in row] for row in zip(*columns, strict=True)]
    return {"columns": list(table.column_names), "rows": rows}
