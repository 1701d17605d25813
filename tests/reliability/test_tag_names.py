"""DESIGN §2 on tag names: two ids under one name stop the tenant's runs and reads with an
error naming the ids, before anything is written."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest
from psycopg import sql

from tagflow.assets.partitions import TENANT_DIMENSION, tenant_day_key
from tagflow.cli.runs import materialize_days
from tagflow.errors import SourceDataError
from tagflow.pipelines.definitions import build_definitions
from tagflow.readapi import Client
from tagflow.settings import Settings

DAY = date(2026, 3, 2)


@pytest.fixture
def duplicated(make_tenant, admin_conn) -> str:
    """A tenant whose ids 7 and 9 share a name (the source lost its UNIQUE constraint)."""
    tenant = make_tenant().name
    s = sql.Identifier(tenant)
    admin_conn.execute(
        sql.SQL("ALTER TABLE {}.tag_names DROP CONSTRAINT tag_names_normalized_name_key").format(s)
    )
    born = datetime(2026, 1, 1, tzinfo=UTC)
    for tag_id, name in ((7, "line/flow"), (8, "line/level"), (9, "line/flow")):
        admin_conn.execute(
            sql.SQL(
                "INSERT INTO {}.tag_names (id, normalized_name, birth_at) VALUES (%s, %s, %s)"
            ).format(s),
            (tag_id, name, born),
        )
        admin_conn.execute(
            sql.SQL("INSERT INTO {}.tag_data VALUES (%s, %s, 1.0)").format(s),
            (tag_id, datetime(2026, 3, 2, 1, tzinfo=UTC)),
        )
    return tenant


def files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


def test_the_cli_refuses_before_any_run(duplicated, pg_url, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    settings = Settings(source_url=pg_url, store=str(tmp_path))
    with pytest.raises(SourceDataError, match=r"ids 7 and 9 share the name 'line/flow'"):
        materialize_days(duplicated, DAY, date(2026, 3, 3), instance, settings)
    assert files(tmp_path) == []
    assert instance.get_runs() == []


def test_a_run_fails_at_once_and_writes_nothing(duplicated, pg_url, tmp_path):
    """Started by a schedule or the UI (no CLI check before it): the day step fails without
    retries, with the ids in its error, and no file is written."""
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(TENANT_DIMENSION, [duplicated])
    job = build_definitions(Settings(source_url=pg_url, store=str(tmp_path))).resolve_job_def(
        "all_assets"
    )
    result = job.execute_in_process(
        partition_key=tenant_day_key(duplicated, DAY.isoformat()),
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    failures = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    assert [event.step_key for event in failures] == ["day"]
    error = failures[0].dagster_event.step_failure_data.user_failure_data
    assert "ids 7 and 9 share the name 'line/flow'" in error.description
    assert instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_RESTARTED) == []
    assert files(tmp_path) == []


def test_reads_answer_the_error_not_a_merged_history(duplicated, pg_url, tmp_path):
    client = Client(tenant=duplicated, store=tmp_path, source_url=pg_url)
    with pytest.raises(SourceDataError, match="ids 7 and 9"):
        client.get_metric_data(["line/flow"], ("2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z"))
