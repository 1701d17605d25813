"""The source reads of derived tags on a real PostgreSQL: their inputs' rows before a day
(per-tag upper bounds), first rows, which inputs have rows in a day, tags by name, and the
carry-in restricted to a few tags (the same rows as the whole carry-in, probing only them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from psycopg import sql

from tagflow.source.connection import connect
from tagflow.source.derived_history import SourceHistory
from tagflow.source.extract import carry_in_query, read_carry_in
from tagflow.transforms.columns import NO_TIME
from tests.pipelines.test_derived_tags import load


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def us(t: datetime) -> int:
    return (t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def test_the_history_reads_of_derived_tags_inputs(make_tenant, admin_conn, pg_url):
    tenant = make_tenant().name
    tags = [(1, "a", None), (2, "b", at(5)), (3, "s", None), (4, "quiet", None)]
    numeric = [(1, at(1), 1.0), (1, at(2), 2.0), (1, at(3), None), (2, at(2, 6), 5.0)]
    numeric += [(1, datetime(2026, 2, 1, tzinfo=UTC).replace(year=1), 9.0)]
    strings = [(3, at(2, 12), "RUNNING"), (3, at(4), None)]
    load(admin_conn, tenant, tags, numeric, strings)
    # A row at -infinity is in no day and no history.
    admin_conn.execute(
        sql.SQL("INSERT INTO {}.tag_data VALUES (2, '-infinity', 7)").format(sql.Identifier(tenant))
    )
    with connect(pg_url) as conn:
        history = SourceHistory(conn, tenant)
        rows = history.rows_before(
            np.array([1, 3], np.int32), us(at(2)), np.array([us(at(4)), us(at(5))])
        )
        got = sorted(
            zip(
                rows.column("tag_id").to_pylist(),
                rows.column("time").to_pylist(),
                rows.column("value_double").to_pylist(),
                rows.column("value_string").to_pylist(),
                rows.column("is_string").to_pylist(),
                strict=True,
            )
        )
        assert got == [
            (1, at(2), 2.0, None, False),
            (1, at(3), None, None, False),
            (3, at(2, 12), None, "RUNNING", True),
            (3, at(4), None, None, True),
        ]
        firsts = history.first_row_times(np.array([1, 2, 3, 4], np.int32))
        assert firsts.tolist() == [
            us(datetime(1, 2, 1, tzinfo=UTC)),
            us(at(2, 6)),
            us(at(2, 12)),
            NO_TIME,
        ]
        assert history.ids_with_rows([1, 2, 3, 4], at(2), at(3)) == {1, 2, 3}
        named = history.named_tags(["b", "s", "missing"])
        assert named.column("tag_name").to_pylist() == ["b", "s"]
        assert named.column("death_at").to_pylist() == [at(5), None]

        whole = read_carry_in(conn, tenant, at(4, 1))
        some = read_carry_in(conn, tenant, at(4, 1), [1, 3])
        assert some.to_pylist() == [r for r in whole.to_pylist() if r["tag_id"] in (1, 3)]
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                sql.SQL("EXPLAIN {}").format(carry_in_query(tenant, at(4), [1, 3]))
            )
        )
        # The filter reaches the scan of tag_names: the other tags are never probed.
        assert "tag_names" in plan and "ANY" in plan.split("tag_names", 1)[1].split("\n")[1]
