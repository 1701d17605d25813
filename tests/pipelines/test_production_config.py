"""Production configuration with real services: PostgreSQL instance storage (dagster-postgres on
the embedded server), an S3 store root (s3fs against moto's S3 server on loopback), and the
default multiprocess executor."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pyarrow as pa
import pytest
import sqlalchemy as sa
import yaml
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from upath import UPath

from tagflow.assets.partitions import tenant_day_key
from tagflow.cli.runs import QUIET_CONSOLE, materialize_days
from tagflow.errors import InvalidArgument
from tagflow.io_managers import DatasetStore
from tagflow.pipelines.dagster_internals import PARTITION_TAG
from tagflow.pipelines.definitions import build_definitions
from tagflow.pipelines.executor import launched_run_executor
from tagflow.pipelines.instance import (
    GENERATED_MARKER,
    PG_URL_ENV,
    dagster_instance,
    prepare_dagster_home,
)
from tagflow.pipelines.schedules import all_assets_job
from tagflow.schemas.registry import DATASETS, DATED
from tagflow.settings import Settings
from tagflow.source.connection import libpq_url

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROJECT_CONFIG = PROJECT_ROOT / "pipelines" / "dagster_instance.yaml"
BUCKET = "tagflow-test"


# --- instance configuration -------------------------------------------------------------------


def pg_settings(url: str) -> Settings:
    return Settings.from_env({PG_URL_ENV: url})


def test_default_home_is_sqlite_with_the_project_settings(tmp_path, monkeypatch):
    monkeypatch.delenv(PG_URL_ENV, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    instance = dagster_instance(Settings.from_env())
    try:
        config = yaml.safe_load((tmp_path / "home" / "dagster.yaml").read_text())
        assert config["storage"]["custom"]["class"] == "PooledSqliteStorage"
        assert config["concurrency"] == {"pools": {"default_limit": 2}}
        assert type(instance.run_storage).__name__ == "PooledSqliteRunStorage"
        assert type(instance.event_log_storage).__name__ == "PooledSqliteEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PooledSqliteScheduleStorage"
        # Dagster's own layout in the home: a stock instance reads the same files.
        assert (tmp_path / "home" / "history" / "runs.db").is_file()
        assert (tmp_path / "home" / "schedules" / "schedules.db").is_file()
    finally:
        instance.dispose()


def test_pg_url_adds_a_storage_section_that_keeps_the_secret_off_disk(tmp_path):
    env = {PG_URL_ENV: "postgresql+psycopg2://dagster:s3cret@db.example/dagster"}
    home = prepare_dagster_home(Settings.from_env(env), tmp_path / "home", PROJECT_CONFIG)
    text = (home / "dagster.yaml").read_text()
    assert text.startswith(GENERATED_MARKER) and "s3cret" not in text
    assert yaml.safe_load(text)["storage"] == {"postgres": {"postgres_url": {"env": PG_URL_ENV}}}
    # Unsetting the variable switches a generated home back to SQLite.
    prepare_dagster_home(Settings.from_env({}), home, PROJECT_CONFIG)
    storage = yaml.safe_load((home / "dagster.yaml").read_text())["storage"]
    assert storage["custom"]["config"] == {"base_dir": str(home)}


def test_a_pg_url_without_the_psycopg2_driver_is_refused(tmp_path):
    with pytest.raises(InvalidArgument, match="psycopg2"):
        prepare_dagster_home(pg_settings("postgresql://x@h/db"), tmp_path, PROJECT_CONFIG)


def test_a_home_copied_from_the_project_config_is_upgraded(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("# an older comment\n" + PROJECT_CONFIG.read_text())
    prepare_dagster_home(pg_settings("postgresql+psycopg2://x/y"), home, PROJECT_CONFIG)
    assert "postgres" in yaml.safe_load((home / "dagster.yaml").read_text())["storage"]


def test_a_hand_written_instance_file_is_left_alone(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with pytest.warns(UserWarning, match=PG_URL_ENV):
        prepare_dagster_home(pg_settings("postgresql+psycopg2://x/y"), home, PROJECT_CONFIG)
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


# Says it is ready once its imports are done, then opens the instance when told to go, so
# that two of them create a fresh home's SQLite schema within a millisecond of each other.
FIRST_INSTANCE = """
import sys
from tagflow.pipelines.instance import dagster_instance
from tagflow.settings import Settings
print("ready", flush=True)
sys.stdin.readline()
instance = dagster_instance(Settings.from_env())
try:
    assert instance.get_runs(limit=1) == []
finally:
    instance.dispose()
"""


def test_two_processes_creating_a_fresh_home_at_once_both_succeed(tmp_path):
    for attempt in range(5):
        env = {k: v for k, v in os.environ.items() if k != PG_URL_ENV}
        env["DAGSTER_HOME"] = str(tmp_path / f"home{attempt}")
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", FIRST_INSTANCE],
                cwd=PROJECT_ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for process in processes:
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        for process in processes:
            _, stderr = process.communicate(timeout=120)
            assert process.returncode == 0, f"attempt {attempt}: {stderr[-3000:]}"
        assert (
            (tmp_path / f"home{attempt}" / "dagster.yaml").read_text().startswith(GENERATED_MARKER)
        )


def dagster_database_url(pg_url: str, database: str) -> str:
    """A SQLAlchemy URL (psycopg2, as dagster-postgres uses) for `database` on pg_url's server;
    host and port go in the query so a Unix-socket directory works as well as a hostname."""
    parts = conninfo_to_dict(libpq_url(pg_url))
    query = {key: str(parts[key]) for key in ("host", "port") if parts.get(key)}
    url = sa.URL.create(
        "postgresql+psycopg2",
        username=parts.get("user") or None,
        password=parts.get("password") or None,
        database=database,
        query=query,
    )
    return url.render_as_string(hide_password=False)


@pytest.fixture
def dagster_pg_url(admin_conn: psycopg.Connection, pg_url: str) -> Iterator[str]:
    """A fresh database for Dagster's storage on the test server, dropped afterwards."""
    name = f"dagster_{uuid.uuid4().hex[:12]}"
    admin_conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield dagster_database_url(pg_url, name)
    finally:
        admin_conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def test_postgres_instance_records_a_real_materialisation(
    small_plant, pg_url, dagster_pg_url, tmp_path, monkeypatch
):
    monkeypatch.setenv(PG_URL_ENV, dagster_pg_url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    instance = dagster_instance(Settings.from_env())
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        tenant = small_plant.tenants[0].tenant
        day = small_plant.start.date()
        (run,) = materialize_days(
            tenant,
            day,
            day + timedelta(days=1),
            instance,
            Settings(source_url=pg_url, store=str(tmp_path / "store")),
        )
        assert run.success
        record = instance.get_run_record_by_id(run.run_id)
        assert record is not None and record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        spans = instance.fetch_materializations(dg.AssetKey("spans"), limit=10).records
        assert [r.run_id for r in spans] == [run.run_id]
    finally:
        instance.dispose()
    # Read the same facts straight from the PostgreSQL tables, bypassing Dagster's API.
    engine = sa.create_engine(dagster_pg_url)
    try:
        with engine.connect() as conn:
            status = conn.execute(
                sa.text("SELECT status FROM runs WHERE run_id = :id"), {"id": run.run_id}
            ).scalar_one()
            events = conn.execute(
                sa.text("SELECT count(*) FROM event_logs WHERE run_id = :id"), {"id": run.run_id}
            ).scalar_one()
            partitions = conn.execute(
                sa.text(
                    "SELECT partition FROM dynamic_partitions WHERE partitions_def_name = 'tenant'"
                )
            ).scalars()
            assert (status, list(partitions)) == ("SUCCESS", [tenant])
            assert events > 20
    finally:
        engine.dispose()


# --- executor -----------------------------------------------------------------------------------


def test_executor_limit_comes_from_the_environment():
    assert Settings.from_env({}).max_concurrent is None
    settings = Settings.from_env({"TAGFLOW_MAX_CONCURRENT": "3"})
    mapped = launched_run_executor(settings).apply_config_mapping({})
    assert mapped.value["config"]["max_concurrent"] == 3
    for bad in ("0", "-1", "two"):
        with pytest.raises(InvalidArgument, match="TAGFLOW_MAX_CONCURRENT"):
            Settings.from_env({"TAGFLOW_MAX_CONCURRENT": bad})


def multiprocess_job() -> dg.JobDefinition:
    """The code location's job of every asset, rebuilt in each step process from the
    environment."""
    return build_definitions(Settings.from_env()).resolve_job_def(all_assets_job.name)


def test_a_launched_run_executes_steps_in_separate_processes(
    small_plant, pg_url, tmp_path, monkeypatch
):
    # Step processes rebuild the definitions, so source and store come from the environment.
    monkeypatch.setenv("TAGFLOW_SOURCE_URL", pg_url)
    monkeypatch.setenv("TAGFLOW_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("TAGFLOW_MAX_CONCURRENT", "2")
    tenant = small_plant.tenants[0].tenant
    day = small_plant.start.date()
    job = multiprocess_job()
    assert job.executor_def.name == "tagflow_multiprocess"
    monkeypatch.delenv(PG_URL_ENV, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    settings = Settings.from_env()
    instance = dagster_instance(settings)  # persistent (SQLite): step processes see the run
    try:
        instance.add_dynamic_partitions("tenant", [tenant])
        tags = {PARTITION_TAG: str(tenant_day_key(tenant, day.isoformat()))}
        # Each step (the day, the checks) in its own process, each importing the project.
        result = dg.execute_job(
            dg.reconstructable(multiprocess_job), instance, run_config=QUIET_CONSOLE, tags=tags
        )
        assert result.success
        starts = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_START)
        pids = {event.dagster_event.pid for event in starts}
        assert len(starts) == 2 and len(pids) == len(starts)  # one process per step
    finally:
        instance.dispose()
    store = DatasetStore(tmp_path / "store")
    assert store.read("tags", tenant).num_rows == small_plant.tenants[0].tags
    assert store.materialised_days("transitions", tenant) == [day]


# --- S3 store root ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port; boto/s3fs reach it through AWS_ENDPOINT_URL."""
    from moto.server import ThreadedMotoServer
    from s3fs import S3FileSystem

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", endpoint)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        # fsspec caches filesystems: one made before the endpoint was set must not be reused.
        S3FileSystem.clear_instance_cache()
        UPath(f"s3://{BUCKET}").fs.mkdir(BUCKET)
        try:
            yield endpoint
        finally:
            S3FileSystem.clear_instance_cache()
            server.stop()


def s3_keys(prefix: str) -> list[str]:
    fs = UPath(f"s3://{BUCKET}").fs
    fs.invalidate_cache()
    return sorted(fs.find(f"{BUCKET}/{prefix}"))


def tags_table(names: list[str]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"tag_id": n, "tag_name": name, "value_kind": "numeric"} for n, name in enumerate(names)],
        schema=DATASETS["tags"].schema,
    )


def test_s3_store_writes_reads_back_and_rerun_replaces(s3_endpoint):
    prefix = f"unit-{uuid.uuid4().hex[:8]}"
    store = DatasetStore(f"s3://{BUCKET}/{prefix}")
    day = date(2026, 3, 1)
    first = tags_table(["a/x", "a/y"])
    assert store.write("tags", "acme", None, first).bytes > 0
    assert store.read("tags", "acme").equals(first)
    second = tags_table(["b/z"])
    store.write("tags", "acme", None, second)  # a rerun replaces the partition
    assert store.read("tags", "acme").equals(second)
    empty = DATASETS["samples_1h"].schema.empty_table()
    store.write("samples_1h", "acme", day, empty)
    assert store.materialised_days("samples_1h", "acme") == [day]
    assert s3_keys(prefix) == [
        f"{BUCKET}/{prefix}/samples_1h/tenant=acme/date=2026-03-01/part-0.parquet",
        f"{BUCKET}/{prefix}/tags/tenant=acme/part-0.parquet",
    ]


def test_materialise_into_s3_equals_local_and_rerun_replaces(
    s3_endpoint, small_plant, pg_url, tmp_path
):
    tenant = small_plant.tenants[1].tenant
    day = small_plant.start.date() + timedelta(days=1)
    prefix = f"dagster-{uuid.uuid4().hex[:8]}"
    root = f"s3://{BUCKET}/{prefix}"
    instance = dg.DagsterInstance.ephemeral()
    end = day + timedelta(days=1)
    (remote,) = materialize_days(
        tenant, day, end, instance, Settings(source_url=pg_url, store=root)
    )
    (local,) = materialize_days(
        tenant, day, end, instance, Settings(source_url=pg_url, store=str(tmp_path))
    )
    assert remote.success and local.success
    s3_store, local_store = DatasetStore(root), DatasetStore(tmp_path)

    def same_files() -> bool:
        # Byte equality (the writer is deterministic) also covers NaN values, which
        # Table.equals treats as unequal.
        for dataset in DATASETS:
            when = None if dataset == "tags" else day
            s3_bytes = s3_store.partition_path(dataset, tenant, when).read_bytes()
            if s3_bytes != local_store.partition_path(dataset, tenant, when).read_bytes():
                return False
        return True

    keys = s3_keys(prefix)
    assert len(keys) == len(DATASETS) and same_files()
    for dataset in DATED:
        assert s3_store.materialised_days(dataset, tenant) == [day]
        assert (
            s3_store.read(dataset, tenant, day).num_rows
            == local_store.read(dataset, tenant, day).num_rows
        )
    (rerun,) = materialize_days(tenant, day, end, instance, Settings(source_url=pg_url, store=root))
    assert rerun.success and s3_keys(prefix) == keys and same_files()
