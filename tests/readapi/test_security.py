"""Tenant isolation and secrets: a key opens exactly one tenant through every endpoint and
parameter; every authentication failure looks the same; revoked keys stop working at once;
keys appear in no repr, log, error or file; error bodies carry no paths or SQL."""

from __future__ import annotations

import logging
import stat
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tagflow.readapi import AuthenticationFailed, Client, UnknownTag
from tagflow.readapi.server.app import create_app
from tagflow.readapi.server.keys import KeyStore
from tests.readapi.conftest import BackgroundServer

D1 = datetime(2026, 3, 1, tzinfo=UTC)
RANGE = (D1, D1 + timedelta(days=2))
PARAMS = {"start": "2026-03-01T00:00:00Z", "end": "2026-03-03T00:00:00Z"}
ENDPOINTS = [
    ("GET", "/v1/tags", PARAMS),
    ("GET", "/v1/spans/plant/special/constant", PARAMS),
    ("GET", "/v1/metrics/data", PARAMS),
    ("GET", "/v1/metrics/samples", {**PARAMS, "bucket_width": "1h"}),
    ("GET", "/v1/metrics/derivative", {**PARAMS, "bucket_width": "1h"}),
    ("GET", "/v1/metrics/counter_rate", {**PARAMS, "bucket_width": "1h"}),
    ("POST", "/v1/metrics/samples", None),
]
CRAFTED_TAGS = [
    "../../{other}/plant/special/constant",
    "..",
    "../{other}",
    "%2e%2e/%2e%2e/{other}/x",
    "tenant={other}/date=2026-03-01/part-0.parquet",
    "x'; DROP TABLE tag_data; --",
    "plant/special/constant' OR '1'='1",
    '"{other}".tag_names',
    "plant/special/constant\\..\\..",
]


def request(url: str, method: str, path: str, params, headers) -> httpx.Response:
    if method == "POST":
        body = {**PARAMS, "bucket_width": "1h"}
        return httpx.post(url + path, json=body, headers=headers)
    return httpx.get(url + path, params=params, headers=headers)


@pytest.mark.parametrize("method, path, params", ENDPOINTS)
def test_every_authentication_failure_is_the_same_401(plant, service_url, method, path, params):
    a, b = plant.tenants
    attempts = [
        {},  # no key
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": f"Basic {plant.key(a)}"},
        {"Authorization": f"Bearer {plant.key(a)}", "X-Tagflow-Tenant": b},  # A's key, B
        {"Authorization": f"Bearer {plant.key(a)}", "X-Tagflow-Tenant": "no_such_tenant"},
        {"Authorization": f"Bearer {plant.key(a)}", "X-Tagflow-Tenant": "../" + b},
        {"Authorization": "Bearer wrong-key", "X-Tagflow-Tenant": "no_such_tenant"},
    ]
    bodies = set()
    for headers in attempts:
        answer = request(service_url, method, path, params, headers)
        assert answer.status_code == 401, (headers, answer.text)
        bodies.add(answer.content)
    assert len(bodies) == 1
    assert plant.key(a) not in bodies.pop().decode()


@pytest.mark.parametrize("method, path, params", ENDPOINTS)
def test_a_key_reads_its_own_tenant_only(plant, service_url, pg_url, method, path, params):
    a, b = plant.tenants
    own = request(service_url, method, path, params, {"Authorization": f"Bearer {plant.key(a)}"})
    named = request(
        service_url,
        method,
        path,
        params,
        {"Authorization": f"Bearer {plant.key(a)}", "X-Tagflow-Tenant": a},
    )
    other = request(service_url, method, path, params, {"Authorization": f"Bearer {plant.key(b)}"})
    assert own.status_code == named.status_code == other.status_code == 200
    assert own.content == named.content
    if path != "/v1/tags":  # both plants have the same tag list, but different values
        assert own.content != other.content


def test_client_with_a_key_of_tenant_a_answers_exactly_tenant_a(plant, service_url, pg_url):
    a, b = plant.tenants
    with Client(host=service_url, api_key=plant.key(a)) as remote:  # tenant from the key
        spans = remote.get_spans("plant/special/mixed", RANGE)
        samples = remote.sample_metric_data("1h", time_range=RANGE)
    local_a = Client(store=plant.root, tenant=a, source_url=pg_url)
    local_b = Client(store=plant.root, tenant=b, source_url=pg_url)
    assert spans == local_a.get_spans("plant/special/mixed", RANGE)
    assert {s.id for s in spans}.isdisjoint(
        s.id for s in local_b.get_spans("plant/special/mixed", RANGE)
    )
    assert samples.equals(local_a.sample_metric_data("1h", time_range=RANGE))
    assert not samples.equals(local_b.sample_metric_data("1h", time_range=RANGE))
    with Client(host=service_url, tenant=b, api_key=plant.key(a)) as wrong:
        with pytest.raises(AuthenticationFailed):
            wrong.get_tags()


@pytest.mark.parametrize("crafted", CRAFTED_TAGS)
def test_crafted_tag_names_reach_no_other_tenant(plant, service_url, crafted):
    a, b = plant.tenants
    name = crafted.format(other=b)
    with Client(host=service_url, tenant=a, api_key=plant.key(a)) as remote:
        with pytest.raises(UnknownTag):
            remote.get_spans(name, RANGE)
        with pytest.raises(UnknownTag):
            remote.sample_metric_data("1h", tag_names=[name], time_range=RANGE)
    # The raw path, unencoded, as a hand-written request would send it.
    raw = f"{service_url}/v1/spans/{name}"
    answer = httpx.get(raw, params=PARAMS, headers={"Authorization": f"Bearer {plant.key(a)}"})
    assert answer.status_code in (400, 404), answer.text
    # The message may echo the name the caller sent, never data, paths or internals. httpx
    # resolves '..' segments, so some of these paths leave /v1/spans and match no route.
    assert answer.json()["error"] in ("unknown_tag", "invalid_name", "not_found")
    for secret in (str(plant.root), "value_double", "Traceback", "SELECT"):
        assert secret not in answer.text
    data = httpx.get(
        f"{service_url}/v1/metrics/data",
        params={**PARAMS, "tag": name},
        headers={"Authorization": f"Bearer {plant.key(a)}"},
    )
    assert data.status_code == 404 and data.json()["error"] == "unknown_tag"


def test_revoked_keys_stop_working_without_a_restart(plant, tmp_path, pg_url):
    keys = KeyStore(tmp_path / "keys.json")
    tenant = plant.tenants[0]
    key, entry = keys.add(tenant)
    spare, _ = keys.add(tenant)
    with BackgroundServer(create_app(plant.root, tmp_path / "keys.json", pg_url)) as server:
        with Client(host=server.url, tenant=tenant, api_key=key) as client:
            assert client.get_tags()
            assert keys.revoke(tenant, entry.key_id) == 1
            with pytest.raises(AuthenticationFailed):
                client.get_tags()
        with Client(host=server.url, tenant=tenant, api_key=spare) as client:
            assert client.get_tags()  # only the revoked key stopped
            keys.revoke(tenant)
            with pytest.raises(AuthenticationFailed):
                client.get_tags()


def test_keys_are_never_shown(plant, service_url, keys_file, caplog):
    key = plant.key(plant.tenants[0])
    caplog.set_level(logging.DEBUG)
    client = Client(host=service_url, tenant=plant.tenants[0], api_key=key)
    assert key not in repr(client) and "api_key=<set>" in repr(client)
    client.get_tags()
    with pytest.raises(AuthenticationFailed) as failure:
        Client(host=service_url, tenant=plant.tenants[1], api_key=key).get_tags()
    assert key not in str(failure.value)
    assert key not in caplog.text
    assert key not in keys_file.read_text()
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert "tf_demo" not in repr(KeyStore(keys_file))


def test_errors_never_show_paths_or_sql(plant, tmp_path, keys_file, pg_url):
    missing_root = tmp_path / "secret-location" / "store"
    a = plant.tenants[0]
    with BackgroundServer(create_app(missing_root, keys_file, None)) as server:
        answer = httpx.get(
            f"{server.url}/v1/tags", headers={"Authorization": f"Bearer {plant.key(a)}"}
        )
    assert answer.status_code == 404 and answer.json()["error"] == "unknown_tenant"
    assert "secret-location" not in answer.text and str(tmp_path) not in answer.text
    store_client = Client(store=plant.root, tenant=a)  # no source configured
    with pytest.raises(Exception) as failure:
        store_client.get_tags((D1, D1 + timedelta(days=5)))
    assert str(plant.root) not in str(failure.value) and "TAGFLOW_SOURCE_URL" in str(failure.value)
    assert str(plant.root) not in repr(store_client)
