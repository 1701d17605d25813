"""The day is read in one scan and spilled by chunk of tags: the chunks, resolved in order, equal
resolving the whole day at once, whatever the estimate that sized them; rows of unknown tag ids
come last and count as orphans; the stream's fingerprint equals the one computed in SQL; and
nothing is left in the spill folder."""

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest
from psycopg import sql

from tagflow.demo.synthetic_plant import generate_plant
from tagflow.schemas.arrow import RAW_ROWS
from tagflow.source.connection import connect
from tagflow.source.day_stream import raw_day_chunks
from tagflow.source.extract import read_carry_in, read_tags, stream_day_rows
from tagflow.source.fingerprints import RowsFingerprint, day_fingerprint, stream_fingerprint
from tagflow.transforms.tag_order import TagOrder
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


@pytest.mark.parametrize(
    "expected_rows,max_rows",
    [(0, 500_000), (10_000_000, 500_000), (0, 40)],
    ids=["one-chunk", "one-tag-a-chunk", "estimate-too-low-split"],
)
def test_chunks_equal_the_whole_day_resolved_at_once(
    tenant_with_orphans, pg_url, expected_rows, max_rows, tmp_path, monkeypatch
):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the spill folder goes here
    with connect(pg_url) as conn:
        tags = read_tags(conn, tenant_with_orphans).sort_by("tag_name")
        raw_carry_in = read_carry_in(conn, tenant_with_orphans, DAY)
        in_sql = day_fingerprint(conn, tenant_with_orphans, DAY, DAY_END)
    raw = pa.Table.from_batches(
        list(stream_day_rows(pg_url, tenant_with_orphans, DAY, DAY_END)), schema=RAW_ROWS
    )
    order = TagOrder.of(tags)
    whole, whole_stats = resolve_rows(raw, order)
    rows = RowsFingerprint()
    chunks = list(
        raw_day_chunks(
            pg_url, tenant_with_orphans, order.tag_id, DAY, DAY_END, expected_rows, rows,
            max_rows=max_rows,
        )
    )  # fmt: skip
    assert chunks[-1].tag_ids is None  # the orphans' chunk, last
    resolved = [resolve_rows(chunk.rows, order) for chunk in chunks]
    if expected_rows or max_rows < 100:
        assert len(chunks) > 10  # one tag (or a few) a chunk
    seen: set[int] = set()
    for chunk in chunks[:-1]:
        ids = set(chunk.tag_ids.tolist())
        assert not ids & seen and set(chunk.rows.column("tag_id").to_pylist()) <= ids
        seen |= ids
    assert seen == set(order.tag_id.tolist())
    # Bit-exact (NaN rows included), row for row.
    assert fingerprint(pa.concat_tables([table for table, _ in resolved])) == fingerprint(whole)
    counts = {name: sum(stats[name] for _, stats in resolved) for name in whole_stats}
    assert counts == whole_stats
    assert counts["orphans_skipped"] == 6
    assert stream_fingerprint(rows, raw_carry_in, tags) == in_sql
    assert list(tmp_path.iterdir()) == []
