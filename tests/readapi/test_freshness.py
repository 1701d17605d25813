"""What the read path caches (footers and tag directories, day listings, the stored tag list)
never answers for a partition that was replaced: a rerun, a late-data rerun, a newly
published day and a renamed tag are all seen by the very next call. A renamed tag keeps its
id, so its whole history answers to its new name (DESIGN §2)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import dagster as dg
import pytest
from psycopg import sql

from tagflow.cli.runs import materialize_days
from tagflow.errors import NotMaterialised, UnknownTag
from tagflow.readapi import Client
from tagflow.settings import Settings
from tests.readapi.conftest import add_line_flow

D1, D2, D3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)
RANGE = ("2026-03-01T00:00:00Z", "2026-03-03T00:00:00Z")


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


@pytest.fixture
def plant(make_tenant, admin_conn, pg_url, tmp_path):
    """A tenant with one tag `line/flow` (id 5) and a reader over a fresh store."""
    tenant = make_tenant().name
    add_line_flow(admin_conn, tenant)
    s = sql.Identifier(tenant)
    settings = Settings(source_url=pg_url, store=str(tmp_path))
    instance = dg.DagsterInstance.ephemeral()

    def materialise(*days: date) -> None:
        for day in days:
            (run,) = materialize_days(
                tenant, day, date.fromordinal(day.toordinal() + 1), instance, settings
            )
            assert run.success

    stored_only = Client(tenant=tenant, store=tmp_path, allow_source=False)
    with_source = Client(tenant=tenant, store=tmp_path, source_url=pg_url)
    return tenant, s, materialise, stored_only, with_source


def values(client: Client, name: str = "line/flow") -> list[tuple[datetime, float]]:
    table = client.get_metric_arrow(name, RANGE)
    return list(zip(table["time"].to_pylist(), table["value_double"].to_pylist(), strict=True))


def test_a_rerun_is_seen_by_the_next_call(plant, admin_conn):
    tenant, s, materialise, stored_only, _ = plant
    materialise(D1, D2)
    assert values(stored_only) == [(at(1, 6), 1.0), (at(2, 6), 2.0)]
    # A late correction of 03-02, rerun: same file name, same size, new content.
    admin_conn.execute(
        sql.SQL("UPDATE {}.tag_data SET tag_value = 7.0 WHERE tag_value = 2.0").format(s)
    )
    materialise(D2)
    assert values(stored_only) == [(at(1, 6), 1.0), (at(2, 6), 7.0)]
    spans = stored_only.get_spans("line/flow", RANGE)
    assert [span.value for span in spans] == [7.0, 1.0]


def test_a_newly_published_day_is_served_by_the_next_call(plant):
    _, _, materialise, stored_only, with_source = plant
    materialise(D1)
    with pytest.raises(NotMaterialised):
        values(stored_only)  # 03-02 is not materialised (and listed as such, cached)
    assert values(with_source) == [(at(1, 6), 1.0), (at(2, 6), 2.0)]  # 03-02 from the source
    materialise(D2)
    assert values(stored_only) == [(at(1, 6), 1.0), (at(2, 6), 2.0)]


def test_a_renamed_tag_answers_with_its_whole_history_under_its_new_name(plant, admin_conn):
    _, s, materialise, stored_only, with_source = plant
    materialise(D1, D2)
    assert values(stored_only) == [(at(1, 6), 1.0), (at(2, 6), 2.0)]
    admin_conn.execute(
        sql.SQL("UPDATE {}.tag_names SET normalized_name = 'line/flow_in' WHERE id = 5").format(s)
    )
    # Before any rerun the source knows the new name; the stored days are found by id.
    assert values(with_source, "line/flow_in") == [(at(1, 6), 1.0), (at(2, 6), 2.0)]
    materialise(D3)  # the next scheduled run stores the renamed tag list
    assert values(stored_only, "line/flow_in") == [(at(1, 6), 1.0), (at(2, 6), 2.0)]
    assert [tag.name for tag in stored_only.get_tags()] == ["line/flow_in"]
    with pytest.raises(UnknownTag):
        values(stored_only, "line/flow")
    wide = stored_only.sample_metric_data("1h", tag_names=["line/flow_in"], time_range=RANGE)
    assert list(wide.columns) == ["time", "line/flow_in"] and wide["line/flow_in"].iloc[-1] == 2.0
