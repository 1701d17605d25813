"""Write–audit–publish through Dagster: a chunk that breaks its schema publishes nothing (every
previous file stays byte for byte, no staged file is left), fails the day step with pandera's
failure cases in its metadata, is not retried, and the checks after it are skipped."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import pyarrow as pa

import tagflow.daystep.run as day_module
from tagflow.cli.runs import materialize_days
from tagflow.settings import Settings
from tagflow.transforms.day import DayResult

DAY = date(2026, 3, 2)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_chunk_breaking_its_schema_publishes_nothing(small_plant, pg_url, tmp_path, monkeypatch):
    tenant = small_plant.tenants[0].tenant
    settings = Settings(source_url=pg_url, store=str(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    end = date(2026, 3, 3)
    (good,) = materialize_days(tenant, DAY, end, instance, settings)
    assert good.success
    before = files(tmp_path)

    compute_day = day_module.compute_day

    def reversed_spans(*args, **kwargs) -> DayResult:
        """The day's chain with one fault: spans come out newest first."""
        result = compute_day(*args, **kwargs)
        spans = result.tables["spans"]
        newest_first = pa.array(range(spans.num_rows - 1, -1, -1), type=pa.int64())
        result.tables["spans"] = spans.take(newest_first)
        return result

    monkeypatch.setattr(day_module, "compute_day", reversed_spans)
    (bad,) = materialize_days(tenant, DAY, end, instance, settings)
    assert not bad.success
    assert files(tmp_path) == before  # nothing published, nothing staged left behind

    failures = instance.all_logs(bad.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    assert [event.step_key for event in failures] == ["day"]
    error = failures[0].dagster_event.step_failure_data.user_failure_data
    assert "nothing was published" in error.description
    assert error.metadata["dataset"].value == "spans"
    cases = error.metadata["failure_cases"].value
    assert cases and cases[0]["check"] == "rows strictly sorted by tag_name, raw_begin_at"
    restarts = instance.all_logs(bad.run_id, of_type=dg.DagsterEventType.STEP_RESTARTED)
    assert restarts == []  # an audit failure is not retried
    started = instance.all_logs(bad.run_id, of_type=dg.DagsterEventType.STEP_START)
    assert [event.step_key for event in started] == ["day"]  # the checks never ran
    evaluations = instance.all_logs(bad.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    assert evaluations == []
    assert instance.all_logs(bad.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION) == []
