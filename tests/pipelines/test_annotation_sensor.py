"""The annotations sensor: a run for each tenant whose annotation history grew since the export
it last requested, one per new high-water mark; a tenant that cannot be read is reported and the
others carry on; a state database that is down or not configured skips the tick."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import dagster as dg

from tagflow.annotations import AnnotationStore, ComputedSpan
from tagflow.assets.partitions import TENANT_DIMENSION
from tagflow.assets.resources import StateDatabase
from tagflow.pipelines.definitions import build_definitions
from tagflow.pipelines.sensors import build_annotations_sensor
from tagflow.settings import Settings

T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
SPAN = ComputedSpan("reactor.temp", T0, datetime(2026, 3, 1, 10, tzinfo=UTC))
# A dynamic partition added by hand under a name no run can address.
BROKEN = "Not-A-Tenant"


def tick(instance, url: str | None, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"state": StateDatabase(url=url)}
    )
    return build_annotations_sensor()(context)


def reason(result: dg.SensorResult) -> str:
    return result.skip_reason.skip_message if result.skip_reason else ""


def requested(result: dg.SensorResult) -> dict[str, str]:
    return {r.partition_key: r.run_key for r in result.run_requests or []}


def test_runs_only_for_tenants_whose_mark_moved(state_url):
    store = AnnotationStore.at(state_url)
    first, second = (f"t_{uuid.uuid4().hex[:10]}" for _ in range(2))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TENANT_DIMENSION, [first, BROKEN, second])
        result = tick(instance, state_url, None)
        assert requested(result) == {}
        # The broken tenant is reported; the tick went on.
        assert BROKEN in reason(result) and "InvalidName" in reason(result)

        # The broken tenant is still registered: the others' runs are requested all the same.
        store.update(first, 11, revision=0, by="ana", computed=SPAN, note="a")
        result = tick(instance, state_url, result.cursor)
        mark = store.high_water_mark(first)
        assert requested(result) == {first: f"{first}|annotations|{mark}"}
        assert result.run_requests[0].tags["tagflow/trigger"] == "annotations"

        # Nothing changed: nothing requested, however often it ticks.
        again = tick(instance, state_url, result.cursor)
        assert requested(again) == {} and again.cursor == result.cursor

        store.update(second, 12, revision=0, by="bo", computed=SPAN, note="b")
        store.update(first, 11, revision=1, by="bo", hidden=True)
        both = tick(instance, state_url, again.cursor)
        assert sorted(requested(both)) == sorted([first, second])
        assert requested(both)[first] == f"{first}|annotations|{store.high_water_mark(first)}"
        assert requested(tick(instance, state_url, both.cursor)) == {}


def test_a_state_database_that_is_down_or_not_configured_skips_the_tick():
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TENANT_DIMENSION, ["acme"])
        down = tick(instance, "postgresql://nobody@127.0.0.1:1/none", '{"acme": 3}')
        assert requested(down) == {}
        assert reason(down).startswith("the state database could not be read")
        assert "127.0.0.1" not in reason(down)
        unset = tick(instance, None, None)
        assert requested(unset) == {} and "TAGFLOW_STATE_URL" in reason(unset)


def test_the_sensor_targets_the_annotation_exports_of_the_code_location():
    defs = build_definitions(Settings(source_url="postgresql://nobody@127.0.0.1:1/none"))
    sensor = {s.name: s for s in defs.sensors}["span_annotations_changed"]
    assert sensor.job_name == "annotation_exports"
    job = defs.resolve_job_def("annotation_exports")
    keys = {key.to_user_string() for key in job.asset_layer.executable_asset_keys}
    assert keys == {"span_annotations", "span_annotation_history"}
    assert job.partitions_def.name == TENANT_DIMENSION
