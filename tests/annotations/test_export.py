"""The analysts' export of span annotations: `tagflow annotations export` and the Dagster asset
write the same two files, holding exactly what was written to the state database, and DuckDB
joins them to `spans` by id."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest
from psycopg import sql
from typer.testing import CliRunner

from tagflow.annotations import AnnotationStore, ComputedSpan
from tagflow.assets.annotations import HIGH_WATER_MARK, annotation_assets
from tagflow.assets.partitions import TENANT_DIMENSION
from tagflow.assets.resources import StateDatabase
from tagflow.assets.retries import state_lost
from tagflow.cli.app import app
from tagflow.cli.runs import materialize_days
from tagflow.demo.synthetic_plant import demo_api_key
from tagflow.errors import StateUnavailable
from tagflow.io_managers import DatasetStore, ParquetDatasetIOManager
from tagflow.schemas.source_ddl import create_tenant
from tagflow.settings import Settings
from tests.conftest import drop_tenant, unique_tenant_name

DAY = date(2026, 3, 1)


def at(hour: int) -> datetime:
    return datetime(2026, 3, 1, hour, tzinfo=UTC)


@pytest.fixture(scope="module")
def annotated(pg_url, admin_conn, state_url, tmp_path_factory):
    """A tenant with one materialised day, two of its computed spans annotated (one changed
    twice), and a span of a person's own."""
    tenant = unique_tenant_name("export")
    create_tenant(admin_conn, tenant, demo_api_key(tenant, seed=1))
    names = sql.SQL("INSERT INTO {}.tag_names (normalized_name) VALUES ('one'), ('two')")
    admin_conn.execute(names.format(sql.Identifier(tenant)))
    table = sql.SQL("INSERT INTO {}.tag_data VALUES (%s, %s, %s)").format(sql.Identifier(tenant))
    for row in [(1, at(6), 1.0), (1, at(10), 2.0), (2, at(8), 5.0)]:
        admin_conn.execute(table, row)
    root = tmp_path_factory.mktemp("spans")
    with dg.instance_for_test() as instance:
        settings = Settings(source_url=pg_url, store=str(root), state_url=state_url)
        assert all(
            r.success for r in materialize_days(tenant, DAY, date(2026, 3, 2), instance, settings)
        )
    spans = DatasetStore(root).read("spans", tenant, DAY).to_pylist()
    store = AnnotationStore.at(state_url)
    first, second = spans[0], spans[1]

    def computed(span) -> ComputedSpan:
        return ComputedSpan(span["tag_name"], span["raw_begin_at"], span["raw_end_at"])

    store.update(tenant, first["id"], revision=0, by="ana", computed=computed(first),
                 labels={"kind": "baseline"}, note="quiet start")  # fmt: skip
    store.update(tenant, first["id"], revision=1, by="bo", hidden=True)
    store.update(tenant, second["id"], revision=0, by="ana", computed=computed(second),
                 labels={"kind": "experiment", "run": "7"}, begin_at=at(11))  # fmt: skip
    own = store.create(tenant, "two", at(9), at(12), by="cy", labels={"kind": "alarm"})
    yield tenant, root, store, (first, second), own
    drop_tenant(admin_conn, tenant)


def cli_export(tenant: str, root: Path, pg_url: str, state_url: str):
    env = {"TAGFLOW_SOURCE_URL": pg_url, "TAGFLOW_STATE_URL": state_url, "TAGFLOW_STORE": str(root)}
    return CliRunner().invoke(app, ["annotations", "export", "--tenant", tenant], env=env)


def asset_export(tenant: str, root: Path, state_url: str | None) -> dg.ExecuteInProcessResult:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TENANT_DIMENSION, [tenant])
        return dg.materialize(
            [annotation_assets()],
            partition_key=tenant,
            instance=instance,
            resources={
                "state": StateDatabase(url=state_url),
                "datasets": ParquetDatasetIOManager(root=str(root)),
            },
            raise_on_error=False,
        )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_and_asset_write_identical_files_of_what_was_written(
    annotated, pg_url, state_url, tmp_path
):
    tenant, _, store, (first, second), own = annotated
    by_cli, by_asset = tmp_path / "cli", tmp_path / "asset"
    done = cli_export(tenant, by_cli, pg_url, state_url)
    assert done.exit_code == 0, done.output
    mark = store.high_water_mark(tenant)
    assert done.output.strip() == (
        f"{tenant}: 3 annotated spans (span_annotations), 4 changes "
        f"(span_annotation_history), up to high-water mark {mark}"
    )
    result = asset_export(tenant, by_asset, state_url)
    assert result.success
    for materialization in result.get_asset_materialization_events():
        metadata = materialization.materialization.metadata
        assert metadata[HIGH_WATER_MARK].value == mark
    for dataset in ("span_annotations", "span_annotation_history"):
        cli_file = DatasetStore(by_cli).partition_path(dataset, tenant)
        asset_file = DatasetStore(by_asset).partition_path(dataset, tenant)
        assert cli_file.path.endswith(f"{dataset}/tenant={tenant}/part-0.parquet")
        assert digest(Path(cli_file.path)) == digest(Path(asset_file.path))

    records = DatasetStore(by_cli).read("span_annotations", tenant).to_pylist()
    assert [r["id"] for r in records] == sorted([first["id"], second["id"], own.span_id])
    by_id = {r["id"]: r for r in records}
    assert dict(by_id[first["id"]]["labels"]) == {"kind": "baseline"}
    assert by_id[first["id"]]["note"] == "quiet start"
    assert by_id[first["id"]]["hidden"] and by_id[first["id"]]["revision"] == 2
    assert by_id[first["id"]]["updated_by"] == "bo"
    assert by_id[first["id"]]["computed_begin_at"] == first["raw_begin_at"]
    assert dict(by_id[second["id"]]["labels"]) == {"kind": "experiment", "run": "7"}
    assert by_id[second["id"]]["begin_at"] == at(11) and by_id[second["id"]]["end_at"] is None
    assert (by_id[own.span_id]["origin"], by_id[own.span_id]["tag_name"]) == ("user", "two")
    assert by_id[own.span_id]["begin_at"] == at(9) and by_id[own.span_id]["end_at"] == at(12)

    history = DatasetStore(by_cli).read("span_annotation_history", tenant).to_pylist()
    assert [(h["id"], h["revision"], h["changed_by"]) for h in history] == [
        (first["id"], 1, "ana"),
        (first["id"], 2, "bo"),
        (second["id"], 1, "ana"),
        (own.span_id, 1, "cy"),
    ]
    # A computed span's first change starts from no annotation; a person's span is created.
    assert json.loads(history[0]["before"])["labels"] == {} and history[-1]["before"] is None
    assert json.loads(history[1]["after"])["hidden"] is True
    assert history[-1]["seq"] == mark


def test_duckdb_joins_annotations_to_spans_by_id(annotated, pg_url, state_url, tmp_path):
    tenant, root, _, (first, second), _ = annotated
    assert cli_export(tenant, root, pg_url, state_url).exit_code == 0
    store = DatasetStore(root)
    joined = duckdb.sql(
        f"""
        SELECT s.id, s.tag_name, a.labels['kind'] AS kind, a.hidden, a.begin_at
        FROM read_parquet('{store.parquet_glob("spans")}', hive_partitioning = true) s
        JOIN read_parquet('{store.parquet_glob("span_annotations")}', hive_partitioning = true) a
          USING (id, tenant)
        WHERE s.tenant = '{tenant}'
        ORDER BY s.id
        """
    ).fetchall()
    assert joined == sorted(
        [
            (first["id"], first["tag_name"], "baseline", True, None),
            (second["id"], second["tag_name"], "experiment", False, at(11)),
        ]
    )


def test_an_unknown_tenant_is_a_one_line_error(pg_url, state_url, tmp_path):
    done = cli_export("no_such_tenant", tmp_path, pg_url, state_url)
    assert done.exit_code == 2
    assert done.output.count("\n") == 1 and "unknown tenant 'no_such_tenant'" in done.output
    assert not (tmp_path / "span_annotations").exists()


def test_an_export_replaces_the_files_with_the_latest_changes(
    annotated, pg_url, state_url, tmp_path
):
    tenant, _, store, (first, _), _ = annotated
    assert cli_export(tenant, tmp_path, pg_url, state_url).exit_code == 0
    current = store.get(tenant, first["id"])
    store.update(tenant, first["id"], revision=current.revision, by="di", note="reviewed")
    assert cli_export(tenant, tmp_path, pg_url, state_url).exit_code == 0
    records = pq.read_table(DatasetStore(tmp_path).partition_path("span_annotations", tenant).path)
    notes = dict(zip(records["id"].to_pylist(), records["note"].to_pylist(), strict=True))
    assert notes[first["id"]] == "reviewed"


def test_the_asset_without_a_state_database_fails_at_once(tmp_path):
    result = asset_export("acme", tmp_path, None)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert "TAGFLOW_STATE_URL" in failure.step_failure_data.user_failure_data.description
    retried = [
        e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
    ]
    assert retried == []  # no database is not one briefly away
    assert not (tmp_path / "span_annotations").exists()


def test_a_state_database_briefly_away_is_retried_three_times_then_fails():
    # The step asks for its retries itself (no Dagster retry policy, which would turn Ctrl-C
    # into a retry): 5, 15 and 35 s apart, then a Failure no policy retries.
    error = StateUnavailable("the state database could not be reached")
    retries = [state_lost(error, attempt) for attempt in range(3)]
    assert all(isinstance(r, dg.RetryRequested) and r.__cause__ is error for r in retries)
    assert [r.seconds_to_wait for r in retries] == [5, 15, 35]
    failure = state_lost(error, 3)
    assert isinstance(failure, dg.Failure) and not failure.allow_retries
    assert failure.description.endswith("(gave up after 3 retries)")
