"""Client construction: environment variables, transport choice, default time ranges,
unknown tenants and tags, and argument checking."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from tagflow.readapi import (
    AuthenticationFailed,
    Client,
    InvalidArgument,
    InvalidName,
    InvalidTimeRange,
    NotMaterialised,
    UnknownTag,
    UnknownTenant,
)

D1 = datetime(2026, 3, 1, tzinfo=UTC)
D4 = D1 + timedelta(days=3)
ENV = ("TAGFLOW_HOST", "TAGFLOW_TENANT", "TAGFLOW_API_KEY", "TAGFLOW_STORE", "TAGFLOW_SOURCE_URL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_missing_arguments_come_from_the_environment(plant, service_url, monkeypatch):
    tenant = plant.tenants[0]
    monkeypatch.setenv("TAGFLOW_STORE", str(plant.root))
    monkeypatch.setenv("TAGFLOW_TENANT", tenant)
    with Client() as from_store:
        assert from_store.store is not None and from_store.tenant == tenant
        tags = from_store.get_tags()
    monkeypatch.setenv("TAGFLOW_HOST", service_url)
    monkeypatch.setenv("TAGFLOW_API_KEY", plant.key(tenant))
    with Client() as from_host:  # TAGFLOW_HOST wins over TAGFLOW_STORE
        assert from_host.host == service_url and from_host.get_tags() == tags
    assert Client(store=plant.root).store is not None  # an explicit store wins over the host


def test_transport_arguments_are_checked(plant, service_url):
    with pytest.raises(InvalidArgument):
        Client(host=service_url, store=plant.root, tenant="acme")
    with pytest.raises(InvalidArgument):
        Client()
    with pytest.raises(InvalidArgument, match="tenant"):
        Client(store=plant.root)
    with pytest.raises(AuthenticationFailed, match="TAGFLOW_API_KEY"):
        Client(host=service_url, tenant="acme")
    with pytest.raises(InvalidName):
        Client(store=plant.root, tenant="acme; drop schema x")


def test_calls_without_a_range_cover_the_materialised_days(plant):
    tenant = plant.tenants[0]
    client = Client(store=plant.root, tenant=tenant)  # no source: only materialised days
    assert client.get_spans("plant/special/constant") == client.get_spans(
        "plant/special/constant", (D1, D4)
    )
    window = (D1 + timedelta(hours=1), D1 + timedelta(hours=3))
    with_default = Client(store=plant.root, tenant=tenant, default_time_range=window)
    frame = with_default.sample_metric_data("1h", tag_names="plant/special/constant")
    assert len(frame) == 2 and "default_time_range" in repr(with_default)
    assert with_default.get_spans("plant/special/constant")[0].begin_at == window[0]


def test_unknown_tenant_and_unknown_tags_are_typed_errors(plant, pg_url):
    with pytest.raises(UnknownTenant):
        Client(store=plant.root, tenant="nobody_here", source_url=pg_url).get_tags()
    with pytest.raises(UnknownTenant):
        Client(store=plant.root, tenant="nobody_here").get_spans("x", (D1, D4))
    client = Client(store=plant.root, tenant=plant.tenants[0], source_url=pg_url)
    with pytest.raises(UnknownTag, match="'no/such'"):
        client.get_spans("no/such", (D1, D4))
    with pytest.raises(UnknownTag, match="2 more"):
        client.get_metric_data([f"missing/{n}" for n in range(7)], (D1, D4))
    # Any text is a tag name to look up (issue 17): the empty one is just not in this catalogue.
    with pytest.raises(UnknownTag, match="unknown tag ''"):
        client.get_spans("", (D1, D4))
    with pytest.raises(InvalidName, match="at most 65,536 bytes"):
        client.get_spans("x" * 65_537, (D1, D4))
    with pytest.raises(InvalidName):
        client.get_metric_data(["ok", 3], (D1, D4))


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get_spans("plant/special/constant", (D1, D4), limit=0),
        lambda c: c.get_spans("plant/special/constant", (D1, D4), limit=-1),
        lambda c: c.get_spans("plant/special/constant", (D1, D4), limit=2.5),
        lambda c: c.sample_metric_data("1h", bucket_function="interpolate", time_range=(D1, D4)),
        lambda c: c.sample_metric_data("1h", aggregate_function="sum", time_range=(D1, D4)),
        lambda c: c.derivative("1h", aggregate_function="count", time_range=(D1, D4)),
    ],
)
def test_unsupported_options_are_clear_errors(plant, call):
    with pytest.raises(InvalidArgument):
        call(Client(store=plant.root, tenant=plant.tenants[0]))


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.sample_metric_data("0s", time_range=(D1, D4)),
        lambda c: c.sample_metric_data(timedelta(minutes=-5), time_range=(D1, D4)),
        lambda c: c.sample_metric_data("1s", time_range=(D1, D1 + timedelta(days=30))),
        lambda c: c.get_tags((datetime(2026, 3, 1), D4)),
        lambda c: c.get_tags((D4, D1)),
        lambda c: c.get_spans("plant/special/constant", (D1, D1 + timedelta(days=800))),
    ],
)
def test_bad_widths_and_ranges_are_invalid_time_ranges(plant, call):
    with pytest.raises(InvalidTimeRange):
        call(Client(store=plant.root, tenant=plant.tenants[0]))


def test_readapi_imports_neither_assets_nor_pipelines():
    import subprocess
    import sys

    code = (
        "import sys, tagflow.readapi.client, tagflow.readapi.server.app\n"
        "bad = sorted({m.split('.')[1] for m in sys.modules if m.startswith('tagflow.')}"
        " & {'assets', 'pipelines', 'cli'})\n"
        "print(bad)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_one_read_config_builds_the_client_and_the_service_alike(plant, pg_url, tmp_path):
    from tagflow.readapi.engine.config import ReadConfig
    from tagflow.readapi.server.app import create_app
    from tagflow.settings import Settings

    settings = Settings(store=str(plant.root), source_url=pg_url, max_rows=1234)
    config = ReadConfig.from_settings(settings, max_source_days=2)
    assert (config.store, config.source_url) == (str(plant.root), pg_url)
    assert (config.max_source_days, config.answer_limits.max_rows) == (2, 1234)
    assert config.cache_ttl_s == ReadConfig.cache_ttl_s  # the one default
    tenant = plant.tenants[0]
    with Client(store=config, tenant=tenant) as client:
        with pytest.raises(NotMaterialised, match="at most 2 days"):
            client.get_tags((D1, D1 + timedelta(days=10)))
    service = create_app(config, tmp_path / "keys.json").state.read_service
    assert service.engine.config is config and service.engine.fallback is not None


def test_reading_a_store_imports_no_extra(plant, tmp_path):
    """The store transport without a source loads neither the fallback nor its drivers (the
    base install has none of them: tests/readapi/test_lean_install.py)."""
    extras = ["psycopg", "sqlalchemy", "yaml", "dagster", "fastapi", "polars", "pandera"]
    ours = ("tagflow.source", "tagflow.daystep", "tagflow.readapi.engine.fallback")
    script = (
        "import sys\n"
        "from tagflow.readapi import Client\n"
        f"Client(store={str(plant.root)!r}, tenant={plant.tenants[0]!r}).get_tags()\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {extras!r}"
        f" or m.startswith({ours!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"
