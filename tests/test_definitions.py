"""The whole Dagster code location loads and its asset graph is wired as DESIGN §4 says."""

from datetime import date

import dagster as dg
import pytest

from tagflow.assets.partitions import TenantDays, TenantMonths
from tagflow.errors import TagflowError
from tagflow.pipelines.definitions import build_definitions
from tagflow.pipelines.definitions import defs as load_code_location
from tagflow.settings import Settings

SETTINGS = Settings(source_url="postgresql://nobody@127.0.0.1:1/none")
defs = build_definitions(SETTINGS)
tenant_days = TenantDays.of(SETTINGS).definition
tenant_months = TenantMonths.of(SETTINGS).definition

DATASETS = {
    "tags",
    "transitions",
    "carry_in",
    "spans",
    "samples_1m",
    "samples_str_1m",
    "samples_1h",
    "samples_str_1h",
    "samples_1d",
    "samples_str_1d",
}


def asset_graph():
    return defs.resolve_asset_graph()


COPIED = DATASETS - {"tags", "carry_in"}
ANNOTATIONS = {"span_annotations", "span_annotation_history"}


def test_every_dataset_is_an_asset_partitioned_by_tenant_and_day():
    graph = asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == DATASETS | {f"month_copies/{name}" for name in COPIED} | ANNOTATIONS
    for name in DATASETS:
        assert graph.get(dg.AssetKey(name)).partitions_def == tenant_days
    for name in ANNOTATIONS:
        assert graph.get(dg.AssetKey(name)).partitions_def.name == "tenant"


def test_month_copies_are_partitioned_by_tenant_and_month_over_their_days():
    graph = asset_graph()
    for name in COPIED:
        node = graph.get(dg.AssetKey(["month_copies", name]))
        assert node.partitions_def == tenant_months
        assert {key.to_user_string() for key in node.parent_keys} == {name}
    # 2026-02's copy of tenant acme depends on acme's 28 days of February, and only on them.
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("tenant", ["acme", "other"])
    mapping = graph.get_partition_mapping(
        dg.AssetKey(["month_copies", "spans"]), dg.AssetKey("spans")
    )
    days = mapping.get_upstream_mapped_partitions_result_for_partitions(
        tenant_months.subset_with_partition_keys(["2026-02-01|acme"]),
        tenant_months,
        tenant_days,
        dynamic_partitions_store=instance,
    ).partitions_subset.get_partition_keys()
    assert sorted(days) == [f"2026-02-{d:02d}|acme" for d in range(1, 29)]


def test_every_dataset_has_a_blocking_schema_check():
    graph = asset_graph()
    checks = {(key.asset_key.to_user_string(), key.name): key for key in graph.asset_check_keys}
    attached = ("spans", "annotations_attached")
    assert set(checks) == {(name, "audited_file_intact") for name in DATASETS} | {attached}
    for name_and_check, key in checks.items():
        # Detached annotations warn; they never hold back the day's datasets.
        assert graph.get_check_spec(key).blocking == (name_and_check != attached)


def test_the_jobs_resolve_with_resources():
    defs.get_repository_def().get_all_jobs()  # what the webserver loads: names must not clash
    job = defs.resolve_job_def("all_assets")
    assert job.partitions_def == tenant_days
    assert {"source", "datasets"} <= set(defs.resources)


def test_daily_schedule_and_tenant_sensor_target_the_all_assets_job():
    schedules = {s.name: s for s in defs.schedules}
    sensors = {s.name: s for s in defs.sensors}
    assert set(schedules) == {"daily_tenant_days", "month_copies_schedule"}
    assert schedules["month_copies_schedule"].job_name == "month_copies"
    assert set(sensors) == {"tenant_discovery", "late_data", "span_annotations_changed"}
    assert schedules["daily_tenant_days"].job_name == "all_assets"
    assert schedules["daily_tenant_days"].execution_timezone == "UTC"
    assert sensors["tenant_discovery"].job_name == "all_assets"
    assert "source" in sensors["tenant_discovery"].required_resource_keys
    job = defs.resolve_job_def("all_assets")
    assert job.partitions_def == tenant_days
    assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == DATASETS


def test_a_code_location_without_a_source_url_fails_with_a_clear_error(monkeypatch):
    monkeypatch.delenv("TAGFLOW_SOURCE_URL", raising=False)
    with pytest.raises(TagflowError, match="TAGFLOW_SOURCE_URL"):
        load_code_location()
    monkeypatch.setenv("TAGFLOW_SOURCE_URL", "embedded")
    assert isinstance(load_code_location(), dg.Definitions)  # loading starts no server


def test_the_start_date_setting_moves_the_first_partition_day():
    settings = Settings.from_env({"TAGFLOW_SOURCE_URL": "x", "TAGFLOW_START_DATE": "2024-06-01"})
    graph = build_definitions(settings).resolve_asset_graph()
    days = graph.get(dg.AssetKey("spans")).partitions_def.partitions_defs[0]
    assert days.name == "date"
    assert days.partitions_def.get_first_partition_key() == "2024-06-01"


def test_the_partitions_span_start_to_end_date_when_an_end_is_set():
    """TAGFLOW_END_DATE (exclusive) bounds the days, and the months run through the last day's."""
    settings = Settings(start_date=date(2026, 3, 1), end_date=date(2026, 3, 4))
    days = TenantDays.of(settings).definition.get_partitions_def_for_dimension("date")
    assert days.get_partition_keys() == ["2026-03-01", "2026-03-02", "2026-03-03"]
    months = TenantMonths.of(settings).definition.get_partitions_def_for_dimension("month")
    assert months.get_partition_keys() == ["2026-03-01"]
