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
RAW_CARRY_IN = pa.schema([*RAW_ROWS, ("run_begin_at", TS)])

TAGS = pa.schema(
    [
        ("tag_id", pa.int32()),
        ("tag_name", pa.string()),
        ("birth_at", TS),
        ("death_at", TS),
        ("value_kind", pa.string()),
    ]
)

# The `tags` dataset: the source tags (TAGS) and the derived tags (DESIGN §8), which are rows
# of their own: `derived` true, a negative tag_id, their `expression` and `description`, and
# `input_deaths`, the death_at of every source tag they read: the only instants where a
# derived tag can become undefined (that acts like a death, and its next transition brings it
# back), so readers rebuild its step function from its transitions as they do a source tag's.
# A file written before these columns existed reads as source tags only (see conform).
TAGS_DATASET = pa.schema(
    [
        *TAGS,
        ("derived", pa.bool_()),
        ("expression", pa.string()),
        ("description", pa.string()),
        ("input_deaths", pa.list_(TS)),
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

# A transition and the time its run of equal values began.
CARRY_IN = pa.schema([*TRANSITIONS, ("run_begin_at", TS)])

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


# The analysts' export of span annotations (DESIGN §9): one row per annotated span, `id` joins
# `spans.id` (a person's span has an id of its own). Labels are a map, which DuckDB filters
# (`labels['kind']`) and unnests without parsing; bounds are the corrections (null keeps the
# computed bound), computed_begin_at / computed_end_at the computed span when last written.
SPAN_ANNOTATIONS = pa.schema(
    [
        ("id", pa.int64()),
        ("origin", pa.string()),
        ("tag_name", pa.string()),
        ("labels", pa.map_(pa.string(), pa.string())),
        ("note", pa.string()),
        ("begin_at", TS),
        ("end_at", TS),
        ("hidden", pa.bool_()),
        ("revision", pa.int64()),
        ("updated_at", TS),
        ("updated_by", pa.string()),
        ("computed_begin_at", TS),
        ("computed_end_at", TS),
        ("moved_to", pa.int64()),
    ]
)

# Every change of the annotations, in the order made (`seq`, which only grows): `before` and
# `after` are the changed content as JSON text (labels, note, bounds, hidden, moved_to; DuckDB
# reads them with `->>`), `before` null for the change that created the record.
SPAN_ANNOTATION_HISTORY = pa.schema(
    [
        ("seq", pa.int64()),
        ("id", pa.int64()),
        ("revision", pa.int64()),
        ("before", pa.string()),
        ("after", pa.string()),
        ("changed_by", pa.string()),
        ("changed_at", TS),
    ]
)


# Columns added to a dataset after files of it were written: those files lack them.
ADDED_LATER = frozenset({"derived", "expression", "description", "input_deaths"})


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with the columns of `schema`, in its order and types. A column of ADDED_LATER
    that `table` lacks is filled with its default (false for a bool, else null), so files
    written before it existed stay readable and writable; any other missing column is a
    KeyError, as in Table.select."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        elif field.name not in ADDED_LATER:
            raise KeyError(f'Field "{field.name}" does not exist in schema')
        elif pa.types.is_boolean(field.type):
            columns.append(pa.array([False] * table.num_rows, field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)
