"""Derived tags (DESIGN §8) through the read API: every call answers them, store and HTTP give
the same answers, and a range across materialised and source-fallback days gives what a store
with every day materialised gives, and what the source alone gives."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest

from tagflow.cli.runs import materialize_days
from tagflow.readapi.client import Client
from tagflow.readapi.server.app import create_app
from tagflow.readapi.server.keys import KeyStore
from tagflow.settings import Settings
from tests.pipelines.test_derived_tags import DEFINITIONS, NUMERIC, STRINGS, TAGS, at, load
from tests.readapi.conftest import BackgroundServer

KEY = "derived-read-key-0123456789"
RANGE = (datetime(2026, 3, 1, 12, tzinfo=UTC), datetime(2026, 3, 3, 12, tzinfo=UTC))
DERIVED = [
    "derived/hot",
    "derived/margin",
    "derived/line_state",
    "derived/valve_open",
    "derived/flow_ok",
    "derived/long_high",
    "derived/hot_and_open",
    "plant/m_double",
    "zz/not_hot",
]
NUMERIC_DERIVED = [name for name in DERIVED if name != "derived/line_state"]


@pytest.fixture(scope="module")
def stores(pg_url, admin_conn, tmp_path_factory):
    """The hand-worked tenant (tests/pipelines/test_derived_tags.py, days 03-01..03-03 in the
    source) in three stores: 03-02 only materialised, every day materialised, nothing."""
    from tagflow.schemas.source_ddl import create_tenant
    from tests.conftest import drop_tenant, unique_tenant_name

    tenant = unique_tenant_name("dread")
    create_tenant(admin_conn, tenant, KEY)
    # Rows on 03-03 too, so that its day is more than carry-in.
    load(admin_conn, tenant, TAGS, NUMERIC + [(1, at(6, day=3), 250.0)], STRINGS)
    root = tmp_path_factory.mktemp("derived-reads")
    definitions = root / "derived.yaml"
    definitions.write_text(DEFINITIONS.format(tenant=tenant))
    instance = dg.DagsterInstance.ephemeral()
    for name, days in (
        ("some", [date(2026, 3, 2)]),
        ("all", [date(2026, 3, d) for d in (1, 2, 3)]),
    ):
        settings = Settings(
            source_url=pg_url, store=str(root / name), derived_tags=str(definitions)
        )
        for day in days:
            runs = materialize_days(tenant, day, day + timedelta(days=1), instance, settings)
            assert all(run.success for run in runs)
    (root / "none").mkdir()
    keys = KeyStore(root / "keys.json")
    keys.add(tenant, KEY)
    yield tenant, root, definitions
    drop_tenant(admin_conn, tenant)


@pytest.fixture(scope="module")
def clients(stores, pg_url):
    """Store transport over each store (with the definitions file configured, as a deployment
    has it), and the HTTP transport over the partly materialised one."""
    tenant, root, definitions = stores
    app = create_app(root / "some", root / "keys.json", pg_url, derived_tags=definitions)
    with pytest.MonkeyPatch.context() as patch, BackgroundServer(app) as server:
        patch.setenv("TAGFLOW_DERIVED_TAGS", str(definitions))
        local = {
            name: Client(store=root / name, tenant=tenant, source_url=pg_url)
            for name in ("some", "all", "none")
        }
        remote = Client(host=server.url, tenant=tenant, api_key=KEY)
        yield {**local, "http": remote}
        for client in [*local.values(), remote]:
            client.close()


def answers(client: Client) -> dict[str, object]:
    """Every call of the client on the derived tags over RANGE, as comparable values."""
    out: dict[str, object] = {}
    tags = client.get_tags()
    out["tags"] = [(t.id, t.name, t.derived, t.expression) for t in tags]
    out["active"] = [t.name for t in client.get_tags(RANGE)]
    for name in DERIVED:
        out[f"spans {name}"] = client.get_spans(name, RANGE)
    out["metric"] = client.get_metric_data(DERIVED, RANGE)
    for width in ("1h", "7m13s"):
        for aggregate in ("average", "count", "first"):
            out[f"samples {width} {aggregate}"] = client.sample_metric_data(
                width, aggregate_function=aggregate, tag_names=NUMERIC_DERIVED, time_range=RANGE
            )
    out["strings"] = client.sample_metric_data(
        "1h", aggregate_function="last", tag_names=["derived/line_state"], time_range=RANGE
    )
    return out


def assert_same(left: dict[str, object], right: dict[str, object]) -> None:
    assert left.keys() == right.keys()
    for key, value in left.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(value, right[key], check_exact=False, rtol=1e-12)
        else:
            assert value == right[key], key


def test_get_tags_marks_the_derived_tags(clients):
    tags = {t.name: t for t in clients["some"].get_tags()}
    assert [name for name, t in tags.items() if t.derived] == sorted(DERIVED)
    hot = tags["derived/hot"]
    assert hot.id < 0 and hot.expression.startswith('"plant/temp" > 280')
    assert not tags["plant/temp"].derived and tags["plant/temp"].expression is None
    assert [t.name for t in clients["http"].get_tags() if t.derived] == sorted(DERIVED)


def test_spans_across_fallback_and_materialised_days_keep_the_true_run_starts(clients):
    spans = clients["some"].get_spans("derived/long_high", RANGE)
    # One run from 02-27 08:00 (three days before 03-02) to 03-02 08:00, then 0 onwards.
    assert [(s.raw_begin_at, s.raw_end_at, s.value) for s in spans] == [
        (at(8), None, 0.0),
        (at(8, day=27, month=2), at(8), 1.0),
    ]
    valve = clients["some"].get_spans("derived/valve_open", RANGE)
    assert [(s.raw_begin_at, s.raw_end_at) for s in valve][-1] == (at(12, day=1), at(6))


def test_store_and_http_answer_alike(clients):
    assert_same(answers(clients["some"]), answers(clients["http"]))


def test_materialised_and_fallback_days_agree_at_the_boundary(clients):
    """03-01 and 03-03 from the source around a materialised 03-02, every day materialised,
    and every day from the source: the same answers."""
    some = answers(clients["some"])
    assert_same(some, answers(clients["all"]))
    assert_same(some, answers(clients["none"]))


def test_samples_at_any_width_see_a_derived_tag_undefined_after_an_input_death(clients):
    """valve_open is undefined from valve's death (03-02 06:00) until its rebirth (09:00):
    buckets of 7m13s inside that stretch hold nothing, the ones around it hold 1."""
    frame = clients["some"].sample_metric_data(
        "7m13s", tag_names=["derived/valve_open"], time_range=(at(5), at(10))
    )
    by_start = dict(zip(frame["time"], frame["derived/valve_open"], strict=True))
    width = timedelta(minutes=7, seconds=13)
    inside = [v for t, v in by_start.items() if t >= at(6) and t + width <= at(9)]
    assert inside and all(pd.isna(v) for v in inside)
    assert by_start[min(by_start)] == 1.0 and by_start[max(by_start)] == 1.0
