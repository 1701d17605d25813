"""The store transport's answers checked against the brute-force reference computed from the
source tables directly (whole history, plain Python), for every tag of a generated tenant."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from tagflow.io_managers import DatasetStore
from tagflow.readapi import Client
from tests.readapi.conftest import copy_days
from tests.readapi.expected import (
    active_tag_names,
    assert_wide_equals,
    expected_spans,
    expected_transitions,
    expected_wide,
    us,
)

D1 = datetime(2026, 3, 1, tzinfo=UTC)
D4 = D1 + timedelta(days=3)
FULL = (D1, D4)
AGGREGATES = ["average", "min", "max", "first", "last", "count"]


@pytest.fixture(scope="module")
def tenant(plant) -> str:
    return plant.tenants[0]


@pytest.fixture(scope="module")
def client(plant, tenant, pg_url):
    with Client(store=plant.root, tenant=tenant, source_url=pg_url) as client:
        yield client


@pytest.fixture(scope="module")
def ref(references, tenant):
    return references[tenant]


@pytest.fixture(scope="module")
def kinds(plant, tenant) -> dict[str, str | None]:
    tags = DatasetStore(plant.root).read("tags", tenant).to_pylist()
    return {row["tag_name"]: row["value_kind"] for row in tags}


def test_get_tags_without_range_lists_every_tag_with_birth_and_death(client, ref):
    tags = client.get_tags()
    assert [t.name for t in tags] == sorted(t.name for t in ref.tags.values())
    by_name = {t.name: t for t in ref.tags.values()}
    for tag in tags:
        want = by_name[tag.name]
        assert tag.id == want.tag_id
        assert (us(tag.death_at) if tag.death_at else None) == want.death_at_us
        assert (us(tag.birth_at) if tag.birth_at else None) == want.birth_at_us


@pytest.mark.parametrize(
    "start, end",
    [
        (D1, D4),
        (D1 + timedelta(days=1), D1 + timedelta(days=2)),
        # every level of the summary decomposition: hours, minutes and sub-minute edges
        (D1 + timedelta(hours=5, minutes=30, seconds=10.5), D1 + timedelta(days=1, hours=7)),
        (D1 + timedelta(hours=13, seconds=1), D1 + timedelta(hours=13, seconds=59)),
    ],
)
def test_get_tags_in_a_range_are_the_tags_with_a_transition_in_it(client, ref, start, end):
    assert [t.name for t in client.get_tags((start, end))] == active_tag_names(ref, start, end)


@pytest.mark.parametrize(
    "start, end",
    [
        FULL,
        (D1 + timedelta(hours=7, seconds=3.25), D1 + timedelta(days=2, hours=1)),
        (D1 + timedelta(days=1), D1 + timedelta(days=1, hours=1)),
    ],
)
def test_spans_of_every_tag_equal_the_reference_over_the_whole_range(client, ref, start, end):
    for tag in ref.tags.values():
        assert client.get_spans(tag.name, (start, end)) == expected_spans(ref, tag.name, start, end)


def test_a_run_across_all_days_is_one_span_with_its_true_begin(client, ref):
    spans = client.get_spans("plant/special/constant", (D1 + timedelta(hours=6), D4))
    assert len(spans) == 1
    assert spans[0].raw_begin_at <= D1 and spans[0].begin_at == D1 + timedelta(hours=6)
    assert spans[0].end_at == D4 and spans[0].raw_end_at is None


def test_spans_are_newest_first_and_limit_keeps_the_newest(client):
    name = next(t.name for t in client.get_tags() if "analog" in t.name)
    spans = client.get_spans(name, FULL)
    assert len(spans) > 5
    assert [s.raw_begin_at for s in spans] == sorted((s.raw_begin_at for s in spans), reverse=True)
    assert client.get_spans(name, FULL, limit=5) == spans[:5]
    # every span but the newest ended inside the range, at the next one's start
    for newer, older in zip(spans, spans[1:], strict=False):
        assert older.raw_end_at is not None and older.raw_end_at <= newer.raw_begin_at


def test_metric_data_is_every_transition_sorted_by_time(client, ref):
    start, end = D1 + timedelta(hours=3, microseconds=7), D1 + timedelta(days=2, hours=2)
    frame = client.get_metric_data(None, (start, end))
    got = [(r.tag_name, us(r.time.to_pydatetime()), r.value) for r in frame.itertuples()]
    want = expected_transitions(ref, start, end)
    assert len(got) == len(want)
    assert [g[:2] for g in got] == [w[:2] for w in want]
    for (_, _, value), (_, _, expected) in zip(got, want, strict=True):
        if expected is None or (isinstance(expected, float) and math.isnan(expected)):
            assert value is None or (isinstance(value, float) and math.isnan(value))
        else:
            assert value == expected


def test_metric_data_for_chosen_tags_and_arrow_form(client, ref):
    names = ["plant/special/mixed", "plant/special/dies"]
    table = client.get_metric_arrow(names, FULL)
    assert table.column_names == ["tag_name", "time", "value_double", "value_string"]
    assert set(table.column("tag_name").to_pylist()) <= set(names)
    want = [w for w in expected_transitions(ref, *FULL) if w[0] in names]
    assert len(want) == table.num_rows
    frame = client.get_metric_data(names, FULL)
    assert frame["value"].dtype == object  # the mixed tag has strings


@pytest.mark.parametrize(
    "width, offset, start, end",
    [
        (timedelta(hours=1), timedelta(0), D1, D4),  # stored 1h
        (timedelta(days=1), timedelta(0), D1, D4),  # stored 1d
        (timedelta(minutes=15), timedelta(0), D1, D4),  # rolled up from 1m
        (timedelta(minutes=90), timedelta(minutes=30), D1, D4),  # rolled up from 1m
        # a 1d bucket over a range starting mid-day: partial edge buckets from 1h
        (timedelta(days=1), timedelta(0), D1 + timedelta(hours=6), D4 - timedelta(hours=6)),
        # unaligned range: computed exactly from transitions + carry-in at the start
        (
            timedelta(minutes=90),
            timedelta(minutes=30),
            D1 + timedelta(hours=7, seconds=13.5),
            D1 + timedelta(days=2, hours=5, seconds=1),
        ),
        (timedelta(minutes=7, seconds=13), timedelta(seconds=11), D1 + timedelta(days=1), D4),
    ],
)
def test_samples_equal_the_reference_for_every_aggregate(
    client, ref, kinds, width, offset, start, end
):
    for aggregate in AGGREGATES:
        frame = client.sample_metric_data(
            width, aggregate_function=aggregate, bucket_offset=offset, time_range=(start, end)
        )
        assert list(frame.columns) == ["time", *sorted(kinds)]
        want = expected_wide(ref, start, end, width, offset, aggregate, kinds)
        assert_wide_equals(frame, want, aggregate)


def test_samples_grid_covers_every_bucket_meeting_the_range(client):
    start, end = D1 + timedelta(minutes=10), D1 + timedelta(hours=3, minutes=5)
    frame = client.sample_metric_data(
        "1h", tag_names="plant/special/constant", time_range=(start, end)
    )
    assert [t.to_pydatetime() for t in frame["time"]] == [D1 + timedelta(hours=h) for h in range(4)]
    assert frame["plant/special/constant"].tolist() == [42.0] * 4


def test_derivative_is_the_change_of_the_sampled_average_per_second(client):
    name = next(t.name for t in client.get_tags() if "analog" in t.name)
    average = client.sample_metric_data("1h", tag_names=[name], time_range=FULL)[name]
    rate = client.derivative("1h", tag_names=[name], time_range=FULL)[name]
    assert math.isnan(rate.iloc[0])
    for k in range(1, len(rate)):
        want = (average.iloc[k] - average.iloc[k - 1]) / 3600
        assert math.isclose(rate.iloc[k], want, rel_tol=1e-12) or (
            math.isnan(want) and math.isnan(rate.iloc[k])
        )


def test_counter_rate_counts_drops_as_resets(client, ref):
    name = next(t.name for t in ref.tags.values() if "counter" in t.name)
    tag_id = next(t.tag_id for t in ref.tags.values() if t.name == name)
    start, end = D1 + timedelta(hours=2, minutes=30), D4
    frame = client.counter_rate("2h", tag_names=[name], time_range=(start, end))
    # brute force: consecutive finite values from the carry-in on; a drop restarts at zero
    carry = [c for c in ref.carry_in(us(start)) if c["tag_id"] == tag_id]
    values = [(None, c["value_double"]) for c in carry if c["value_kind"] == "numeric"]
    values += [
        (tr.time_us, tr.value)
        for tr in ref.history[tag_id]
        if us(start) <= tr.time_us < us(end) and tr.kind == "numeric"
    ]
    values = [(t, v) for t, v in values if v is not None and math.isfinite(v)]
    width_us = 2 * 3600 * 10**6
    increase: dict[int, float] = {}
    drops = 0
    for (_, previous), (t, v) in zip(values, values[1:], strict=False):
        drops += v < previous
        bucket = t // width_us * width_us
        increase[bucket] = increase.get(bucket, 0.0) + (v - previous if v >= previous else v)
    assert drops > 0, "the generated counter should reset at least once"
    buckets = [us(t.to_pydatetime()) for t in frame["time"]]
    assert buckets[0] == us(D1 + timedelta(hours=2)) and buckets[-1] == us(D4) - width_us
    for bucket, rate in zip(buckets, frame[name], strict=True):
        seconds = (min(bucket + width_us, us(end)) - max(bucket, us(start))) / 1e6
        assert math.isclose(rate, increase.get(bucket, 0.0) / seconds, rel_tol=1e-12)


def test_an_object_store_root_gives_the_same_answers(plant, tenant, client):
    root = f"memory://tagflow-{uuid.uuid4().hex}/store"
    copy_days(plant.root, root, tenant, [D1.date() + timedelta(days=n) for n in range(3)])
    remote = Client(store=root, tenant=tenant)
    assert remote.get_tags(FULL) == client.get_tags(FULL)
    assert remote.get_spans("plant/special/mixed", FULL) == client.get_spans(
        "plant/special/mixed", FULL
    )
    # Equal up to rounding: a local store computes 15-minute buckets from transitions where
    # that decodes less (its tag directories say so); an object store rolls them up from the
    # 1-minute samples. Both are exact; their last bits may differ.
    pd.testing.assert_frame_equal(
        remote.sample_metric_data("15m", time_range=FULL),
        client.sample_metric_data("15m", time_range=FULL),
        check_exact=False,
        rtol=1e-12,
        atol=0,
    )
