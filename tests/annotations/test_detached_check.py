"""Detached annotations in the day's checks: late data moves the run an annotation was written
on, the day is materialised again and still publishes, its `annotations_attached` check warns
with the annotation's id, and the annotation is kept. A state database that is down is a
warning, never a failed run; without one, nothing can be detached."""

from __future__ import annotations

from datetime import UTC, date, datetime

import dagster as dg
import pytest
from psycopg import sql

from tagflow.annotations import AnnotationStore, ComputedSpan
from tagflow.assets.checks import ATTACHED_CHECK
from tagflow.cli.runs import materialize_days
from tagflow.io_managers import DatasetStore
from tagflow.settings import Settings

DAY = date(2026, 3, 1)
DOWN = "postgresql://nobody@127.0.0.1:1/none"


def at(hour: int) -> datetime:
    return datetime(2026, 3, 1, hour, tzinfo=UTC)


def insert(admin_conn, tenant: str, rows) -> None:
    table = sql.SQL("INSERT INTO {}.tag_data VALUES (%s, %s, %s)").format(sql.Identifier(tenant))
    for row in rows:
        admin_conn.execute(table, row)


def attached_check(instance: dg.DagsterInstance, run_id: str) -> dg.AssetCheckEvaluation:
    (evaluation,) = [
        e.dagster_event.event_specific_data
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        if e.dagster_event.event_specific_data.check_name == ATTACHED_CHECK
    ]
    return evaluation


@pytest.fixture
def one_tag(make_tenant, admin_conn):
    """Tag `one`: 1.0 from 06:00, 2.0 from 14:00 on the day."""
    tenant = make_tenant().name
    names = sql.SQL("INSERT INTO {}.tag_names (normalized_name) VALUES ('one')")
    admin_conn.execute(names.format(sql.Identifier(tenant)))
    insert(admin_conn, tenant, [(1, at(6), 1.0), (1, at(14), 2.0)])
    return tenant


def run_day(tenant: str, instance, settings: Settings):
    (run,) = materialize_days(tenant, DAY, date(2026, 3, 2), instance, settings)
    assert run.success  # a warning of this check never fails the run
    return attached_check(instance, run.run_id)


def test_late_data_detaches_an_annotation_and_the_check_warns_with_its_id(
    one_tag, admin_conn, pg_url, state_url, tmp_path
):
    tenant = one_tag
    settings = Settings(source_url=pg_url, store=str(tmp_path), state_url=state_url)
    annotations = AnnotationStore.at(state_url)
    with dg.instance_for_test() as instance:
        assert run_day(tenant, instance, settings).passed
        spans = DatasetStore(tmp_path).read("spans", tenant, DAY).to_pylist()
        (later,) = [s for s in spans if s["raw_begin_at"] == at(14)]
        computed = ComputedSpan("one", later["raw_begin_at"], later["raw_end_at"])
        annotations.update(tenant, later["id"], revision=0, by="ana", computed=computed,
                           labels={"kind": "experiment"})  # fmt: skip
        assert run_day(tenant, instance, settings).passed  # still computed: attached

        # A late row: 2.0 held from 12:00 already, so the run that began at 14:00 is gone.
        insert(admin_conn, tenant, [(1, at(12), 2.0)])
        evaluation = run_day(tenant, instance, settings)
        assert not evaluation.passed
        assert evaluation.severity == dg.AssetCheckSeverity.WARN
        assert evaluation.metadata["detached_ids"].value == [later["id"]]
        assert evaluation.metadata["detached"].value == 1

    # The day published its new spans; the annotation is kept as it was.
    ids = DatasetStore(tmp_path).read("spans", tenant, DAY).column("id").to_pylist()
    assert later["id"] not in ids
    kept = annotations.get(tenant, later["id"])
    assert kept is not None and kept.labels == {"kind": "experiment"}
    assert kept.computed_begin_at == at(14)


def test_a_state_database_that_is_down_is_a_warning(one_tag, pg_url, tmp_path):
    settings = Settings(source_url=pg_url, store=str(tmp_path), state_url=DOWN)
    with dg.instance_for_test() as instance:
        evaluation = run_day(one_tag, instance, settings)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["verdict"].value.startswith("annotations could not be checked")
    assert "127.0.0.1" not in evaluation.metadata["verdict"].value


def test_without_a_state_database_nothing_can_be_detached(one_tag, pg_url, tmp_path):
    settings = Settings(source_url=pg_url, store=str(tmp_path))
    with dg.instance_for_test() as instance:
        evaluation = run_day(one_tag, instance, settings)
    assert evaluation.passed
    assert "no state database is configured" in evaluation.metadata["verdict"].value
