"""The transitions stage reads the day in one scan, spills it by chunk of tags and resolves
chunk by chunk: the chunks, in order, equal resolving the whole day at once, rows of unknown
tag ids are counted as orphans, and nothing is left in the spill folder."""

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest
from psycopg import sql

from tagflow.demo.synthetic_plant import generate_plant
from tagflow.schemas.arrow import RAW_ROWS
from tagflow.source.connection import connect
from tagflow.source.day_stream import resolved_day_chunks
from tagflow.source.extract import read_tags, stream_day_rows
from tagflow.transforms.transitions import resolve_rows
from tests.conftest import drop_tenant, unique_tenant_name
from tests.reliability.test_crash_safety import fingerprint

DAY = datetime(2026, 3, 2, tzinfo=UTC)
DAY_END = DAY + timedelta(days=1)


@pytest.fixture(scope="module")
def tenant_with_orphans(pg_url, admin_conn):
    tenant = unique_tenant_name("spill")
    generate_plant(pg_url, [tenant], tags=30, days=2, start=date(2026, 3, 1), seed=3)
    # Rows of tag ids missing from tag_names, in both tables, inside and at the edge of the day.
    for table, value in (("tag_data", "1.5"), ("tag_data_str", "'x'")):
        admin_conn.execute(
            sql.SQL(
                "INSERT INTO {}.{} (tag_name_id, tag_value_changed_at, tag_value) "
                "VALUES (100000, %(a)s, {v}), (100001, %(b)s, {v}), (-4, %(a)s, {v})"
            ).format(sql.Identifier(tenant), sql.Identifier(table), v=sql.SQL(value)),
            {"a": DAY + timedelta(hours=3), "b": DAY},
        )
    yield tenant
    drop_tenant(admin_conn, tenant)


@pytest.mark.parametrize("expected_rows", [0, 10_000_000], ids=["one-chunk", "one-tag-a-chunk"])
def test_chunks_equal_the_whole_day_resolved_at_once(
    tenant_with_orphans, pg_url, expected_rows, tmp_path, monkeypatch
):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the spill folder goes here
    with connect(pg_url) as conn:
        tags = read_tags(conn, tenant_with_orphans).sort_by("tag_name")
    raw = pa.Table.from_batches(
        list(stream_day_rows(pg_url, tenant_with_orphans, DAY, DAY_END)), schema=RAW_ROWS
    )
    whole, whole_stats = resolve_rows(raw, tags)
    counts: dict[str, int] = {}
    chunks = list(
        resolved_day_chunks(pg_url, tenant_with_orphans, tags, DAY, DAY_END, expected_rows, counts)
    )
    if expected_rows:
        assert len(chunks) > 10  # 30 tags and a few million rows expected per tag
    # Bit-exact (NaN rows included), row for row.
    assert fingerprint(pa.concat_tables(chunks)) == fingerprint(whole)
    assert counts == whole_stats
    assert counts["orphans_skipped"] == 6
    assert list(tmp_path.iterdir()) == []
