"""The state database's tables (SQLAlchemy Core) and the migrations that create them: a version
table records the schema a database holds; every step of MIGRATIONS runs once, in order, under
an advisory lock, so processes that start together migrate it once and a database migrated by a
newer tagflow is refused, never downgraded."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from tagflow.errors import StateSchemaTooNew

metadata = sa.MetaData()

schema_version = sa.Table(
    "tagflow_schema_version",
    metadata,
    # One row: the number of MIGRATIONS applied.
    sa.Column("version", sa.Integer, nullable=False),
)

# One row per annotated span: its current state (DESIGN §9).
span_annotations = sa.Table(
    "span_annotations",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("span_id", sa.BigInteger, primary_key=True),
    sa.Column("origin", sa.Text, nullable=False),
    sa.Column("tag_name", sa.Text),
    sa.Column("labels", JSONB, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("begin_at", sa.DateTime(timezone=True)),
    sa.Column("end_at", sa.DateTime(timezone=True)),
    sa.Column("hidden", sa.Boolean, nullable=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.Text, nullable=False),
    sa.Column("computed_begin_at", sa.DateTime(timezone=True)),
    sa.Column("computed_end_at", sa.DateTime(timezone=True)),
    sa.Column("moved_to", sa.BigInteger),
    sa.CheckConstraint("origin IN ('computed', 'user')", name="span_annotations_origin"),
    sa.CheckConstraint("begin_at < end_at", name="span_annotations_order"),
    sa.CheckConstraint(
        "origin = 'computed' OR (begin_at IS NOT NULL AND end_at IS NOT NULL)",
        name="span_annotations_user_bounds",
    ),
)

# Every change, appended in the transaction that makes it; `seq` orders all changes of the
# database (the high-water mark a sensor watches).
span_annotation_history = sa.Table(
    "span_annotation_history",
    metadata,
    sa.Column("seq", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("span_id", sa.BigInteger, nullable=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("before", JSONB(none_as_null=True)),
    sa.Column("after", JSONB, nullable=False),
    sa.Column("changed_by", sa.Text, nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("tenant", "span_id", "revision", name="span_annotation_history_revision"),
)

# The ids of the spans people add, before they are moved into their reserved range.
user_span_ids = sa.Sequence("user_span_ids", start=0, minvalue=0)

# The bounds an annotation covers: corrected where set, otherwise those last stored (a stored
# end before the begin, which writes never leave, counts as empty rather than failing a read).
EFFECTIVE_RANGE = (
    "tstzrange(coalesce(begin_at, computed_begin_at), CASE"
    " WHEN coalesce(end_at, computed_end_at) IS NULL THEN NULL"
    " ELSE greatest(coalesce(begin_at, computed_begin_at), coalesce(end_at, computed_end_at))"
    " END, '[)')"
)
# Created with their table: the look-ups of a read by time (AnnotationStore.for_read).
sa.Index(
    "span_annotations_computed", span_annotations.c.tenant, span_annotations.c.computed_begin_at
)


def _create_v1(conn: sa.Connection) -> None:
    for table in (span_annotations, span_annotation_history):
        table.create(conn)
    user_span_ids.create(conn)
    conn.execute(
        sa.text(
            "CREATE INDEX span_annotations_range ON span_annotations"
            f" USING gist ({EFFECTIVE_RANGE})"
        )
    )


def _change_xids_v2(conn: sa.Connection) -> None:
    """Each change's transaction id (`xid`, set by the database): a reader that kept the
    annotations as of a snapshot asks which spans changed in transactions that snapshot did not
    see (AnnotationStore's layer cache), exactly, whatever order writers commit in. Not a
    column of span_annotation_history above, which step 1 creates as it was released."""
    for statement in (
        "ALTER TABLE span_annotation_history ADD COLUMN xid xid8",
        "ALTER TABLE span_annotation_history ALTER COLUMN xid SET DEFAULT pg_current_xact_id()",
        "CREATE INDEX span_annotation_history_xid ON span_annotation_history (tenant, xid)",
    ):
        conn.execute(sa.text(statement))


# Step n brings a database from version n to n + 1; append, never edit a released step.
MIGRATIONS: list[Callable[[sa.Connection], None]] = [_create_v1, _change_xids_v2]
SCHEMA_VERSION = len(MIGRATIONS)

# pg_advisory_xact_lock key of migrations: the int64 of b"tagflowS".
_MIGRATION_LOCK = int.from_bytes(b"tagflowS", "big", signed=True)


def migrate(conn: sa.Connection) -> int:
    """Bring the state database to SCHEMA_VERSION inside the caller's transaction, and return
    the version it held before. StateSchemaTooNew if a newer tagflow migrated it."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
    schema_version.create(conn, checkfirst=True)
    found = conn.execute(sa.select(schema_version.c.version)).scalar()
    if found is None:
        conn.execute(schema_version.insert().values(version=0))
        found = 0
    if found > SCHEMA_VERSION:
        raise StateSchemaTooNew(
            f"the state database holds schema version {found}, newer than this tagflow's "
            f"{SCHEMA_VERSION}; upgrade tagflow to use it"
        )
    for step in MIGRATIONS[found:]:
        step(conn)
    if found < SCHEMA_VERSION:
        conn.execute(schema_version.update().values(version=SCHEMA_VERSION))
    return found
