"""The audit of write–audit–publish: what passes, what fails and how a failure is named, on
hand-made chunks of the datasets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from tagflow.schemas.arrow import SAMPLES, TRANSITIONS
from tagflow.schemas.dataset_checks import AuditFailed, DayAudit

D0 = datetime(2026, 3, 2, tzinfo=UTC)
D1 = D0 + timedelta(days=1)


def transitions(rows: list[tuple[int, str, int, float | None]]) -> pa.Table:
    """(tag_id, tag_name, minute of the day, value) rows."""
    return pa.Table.from_pylist(
        [
            {"tag_id": i, "tag_name": n, "time": D0 + timedelta(minutes=m), "value_double": v,
             "value_string": None, "value_kind": "numeric"}
            for i, n, m, v in rows
        ],
        schema=TRANSITIONS,
    )  # fmt: skip


def failed(dataset: str, *tables: pa.Table) -> AuditFailed:
    audit = DayAudit(D0, D1)
    with pytest.raises(AuditFailed) as failure:
        for table in tables:
            audit.check(dataset, table)
    assert failure.value.dataset == dataset
    return failure.value


def test_a_valid_day_passes_chunk_by_chunk():
    audit = DayAudit(D0, D1)
    audit.check("transitions", transitions([(1, "a", 0, 1.0), (1, "a", 5, None)]))
    audit.check("transitions", transitions([(2, "b", 0, 2.0)]))
    audit.check("transitions", transitions([]))
    assert audit.rows == {"transitions": 3}
    audit.check_counts({"rows_in": 4, "duplicates_dropped": 1, "orphans_skipped": 0}, 4)


def test_each_broken_rule_is_named_with_its_failure_cases():
    unsorted = failed("transitions", transitions([(1, "a", 5, 1.0), (1, "a", 0, 2.0)]))
    assert "rows strictly sorted by tag_name, time" in unsorted.summary
    assert unsorted.cases and unsorted.cases[0]["check"].startswith("rows strictly sorted")
    duplicate = failed("transitions", transitions([(1, "a", 5, 1.0), (1, "a", 5, 2.0)]))
    assert "rows strictly sorted by tag_name, time" in duplicate.summary
    two_ids = failed("transitions", transitions([(1, "a", 0, 1.0), (2, "a", 5, 2.0)]))
    assert "one tag_id per tag_name" in two_ids.summary
    late = failed("transitions", transitions([(1, "a", 24 * 60, 1.0)]))
    assert "time within the partition's day" in late.summary


def test_a_null_in_a_required_column_fails():
    table = transitions([(1, "a", 0, 1.0)])
    table = table.set_column(1, "tag_name", pa.array([None], pa.string()))
    null = failed("transitions", table)
    assert "not_nullable" in null.summary and null.cases[0]["column"] == "tag_name"


def test_chunks_out_of_tag_order_fail_at_the_seam():
    seam = failed("transitions", transitions([(2, "b", 0, 1.0)]), transitions([(1, "a", 0, 1.0)]))
    assert "chunks out of order" in seam.summary


def test_a_sample_outside_its_bounds_fails():
    row = {
        "tag_id": 1, "tag_name": "a", "bucket_start": D0, "twa": 5.0, "covered_s": 60.0,
        "min": 1.0, "max": 2.0, "first": 1.0, "last": 2.0, "count": 1,
    }  # fmt: skip
    assert (
        "twa within [min, max]"
        in failed("samples_1m", pa.Table.from_pylist([row], SAMPLES)).summary
    )
    unaligned = {**row, "twa": 1.5, "bucket_start": D0 + timedelta(seconds=7)}
    failure = failed("samples_1m", pa.Table.from_pylist([unaligned], SAMPLES))
    assert "bucket_start aligned to 0:01:00" in failure.summary


def test_rows_lost_between_stream_and_file_fail_the_accounting():
    audit = DayAudit(D0, D1)
    audit.check("transitions", transitions([(1, "a", 0, 1.0)]))
    with pytest.raises(AuditFailed, match="row accounting"):
        audit.check_counts({"rows_in": 3, "duplicates_dropped": 1, "orphans_skipped": 0}, 3)
