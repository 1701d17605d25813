"""Arrow schemas of the raw source rows and of every dataset (DESIGN §3).

These are the single definition of column names and types; the source reader,
the transforms, the IO manager and the read API all build or check against them.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

# One row of tag_data or tag_data_str as it comes from the source, before duplicate
# resolution: `is_string` says which table it came from (a NULL value alone cannot).
RAW_ROWS = pa.schema(
    [
        ("tag_id", pa.int32()),
        ("time", TS),
        ("value_double", pa.float64()),
        ("value_string", pa.string()),
        ("is_string", pa.bool_()),
    ]
)

# The last row of each tag before a day (duplicates at that instant already resolved
# by the source query) and the time its run of equal values began.
RAW_CARRY_IN = pa.schema(
    [
        ("tag_id", pa.int32()),
        ("time", TS),
        ("value_double", pa.float64()),
        ("value_string", pa.string()),
        ("is_string", pa.bool_()),
        ("run_begin_at", TS),
    ]
)

TAGS = pa.schema(
    [
        ("tag_id", pa.int32()),
        ("tag_name", pa.string()),
        ("birth_at", TS),
        ("death_at", TS),
        ("value_kind", pa.string()),
    ]
)

# `value_kind` ('numeric' | 'string') keeps which source table a row came from, which a
# NULL value alone cannot tell and which decides numeric/string sample membership.
TRANSITIONS = pa.schema(
    [
        ("tag_id", pa.int32()),
        ("tag_name", pa.string()),
        ("time", TS),
        ("value_double", pa.float64()),
        ("value_string", pa.string()),
        ("value_kind", pa.string()),
    ]
)

CARRY_IN = pa.schema(
    [
        ("tag_id", pa.int32()),
        ("tag_name", pa.string()),
        ("time", TS),
        ("value_double", pa.float64()),
        ("value_string", pa.string()),
        ("value_kind", pa.string()),
        ("run_begin_at", TS),
    ]
)

SPANS = pa.schema(
    [
        ("id", pa.int64()),
        ("tag_id", pa.int32()),
        ("tag_name", pa.string()),
        ("value_double", pa.float64()),
        ("value_string", pa.string()),
        ("raw_begin_at", TS),
        ("raw_end_at", TS),
        ("begin_at", TS),
        ("end_at", TS),
    ]
)

SAMPLES = pa.schema(
    [
        ("tag_id", pa.int32()),
        ("tag_name", pa.string()),
        ("bucket_start", TS),
        ("twa", pa.float64()),
        ("covered_s", pa.float64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("first", pa.float64()),
        ("last", pa.float64()),
        ("count", pa.int64()),
    ]
)

# `held_s` (string → seconds held in the bucket) is what makes `mode` roll up exactly
# from finer to coarser buckets.
SAMPLES_STR = pa.schema(
    [
        ("tag_id", pa.int32()),
        ("tag_name", pa.string()),
        ("bucket_start", TS),
        ("covered_s", pa.float64()),
        ("first", pa.string()),
        ("last", pa.string()),
        ("mode", pa.string()),
        ("count", pa.int64()),
        ("held_s", pa.map_(pa.string(), pa.float64())),
    ]
)
