"""Any name the catalogue holds is addressable (issue 17, item 2): a tag named '' and one named
with 10,000 characters are read by name through the store client and the HTTP service (the
client's GET and POST forms, raw GET paths and query strings), from materialised days and from
the source; a request's only bound on a name is its length (64 KiB of UTF-8), which the
service's default head and body limits carry."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote

import dagster as dg
import httpx
import pytest
from psycopg import sql

from tagflow.cli.runs import materialize_days
from tagflow.names import MAX_TAG_NAME_BYTES
from tagflow.readapi import Client, InvalidName, UnknownTag
from tagflow.readapi.query import MAX_SPANS_PATH_BYTES, SpansQuery
from tagflow.readapi.server.app import create_app
from tagflow.readapi.server.keys import KeyStore
from tagflow.readapi.server.limits import LONGEST_NAME_BODY_BYTES
from tagflow.settings import Settings
from tests.readapi.conftest import BackgroundServer

EMPTY = ""
LONG = "plant/" + "ü" * 3_000 + "x" * 6_994  # 10,000 characters, 13,000 bytes of UTF-8
D2 = datetime(2026, 3, 2, tzinfo=UTC)
# Day 2 is materialised, day 3 comes from the source.
RANGE = (D2, D2 + timedelta(days=2))


@pytest.fixture(scope="module")
def odd_names(pg_url, admin_conn, tmp_path_factory):
    """A tenant whose catalogue holds '', a 10,000-character name and an ordinary one, each
    with a few rows on 03-02 and 03-03; 03-02 materialised. Yields (tenant, key, root, keys)."""
    from tagflow.demo.synthetic_plant import demo_api_key
    from tagflow.schemas.source_ddl import create_tenant
    from tests.conftest import drop_tenant, unique_tenant_name

    tenant = unique_tenant_name("names")
    key = demo_api_key(tenant, seed=1)
    create_tenant(admin_conn, tenant, key)
    s = sql.Identifier(tenant)
    born = datetime(2026, 1, 1, tzinfo=UTC)
    for tag_id, name in ((1, EMPTY), (2, LONG), (3, "plant/ordinary")):
        admin_conn.execute(
            sql.SQL(
                "INSERT INTO {}.tag_names (id, normalized_name, birth_at) VALUES (%s, %s, %s)"
            ).format(s),
            (tag_id, name, born),
        )
        for hour, value in ((1, 10.0 * tag_id), (5, 20.0 * tag_id), (30, 30.0 * tag_id)):
            admin_conn.execute(
                sql.SQL("INSERT INTO {}.tag_data VALUES (%s, %s, %s)").format(s),
                (tag_id, D2 + timedelta(hours=hour), value),
            )
    root = tmp_path_factory.mktemp("odd-names")
    runs = materialize_days(
        tenant,
        date(2026, 3, 2),
        date(2026, 3, 3),
        dg.DagsterInstance.ephemeral(),
        Settings(source_url=pg_url, store=str(root)),
    )
    assert all(run.success for run in runs)
    keys = KeyStore(tmp_path_factory.mktemp("odd-keys") / "keys.json")
    keys.add(tenant, key)
    yield tenant, key, root, keys
    drop_tenant(admin_conn, tenant)


@pytest.fixture(scope="module")
def service(odd_names, pg_url):
    tenant, key, root, keys = odd_names
    with BackgroundServer(create_app(root, keys, pg_url)) as server:
        yield server.url


def expected_values(tag_id: int) -> list[float]:
    return [30.0 * tag_id, 20.0 * tag_id, 10.0 * tag_id]  # spans, newest first


def check_reads(client: Client) -> None:
    names = [tag.name for tag in client.get_tags()]
    assert names == [EMPTY, "plant/ordinary", LONG]
    for tag_id, name in ((1, EMPTY), (2, LONG)):
        spans = client.get_spans(name, RANGE)
        assert [span.value for span in spans] == expected_values(tag_id), tag_id
        assert {span.tag_name for span in spans} == {name}
        # Only the materialised day, and only the source's day (its first span carried in).
        assert len(client.get_spans(name, (D2, D2 + timedelta(days=1)))) == 2
        assert len(client.get_spans(name, (D2 + timedelta(days=1), RANGE[1]))) == 2
    data = client.get_metric_data([LONG, EMPTY], RANGE)
    assert sorted(set(data["tag_name"])) == [EMPTY, LONG] and len(data) == 6
    wide = client.sample_metric_data("1d", tag_names=[LONG, EMPTY], time_range=RANGE)
    assert LONG in wide.columns and EMPTY in wide.columns
    assert wide[EMPTY].tolist() == pytest.approx([(10 * 4 + 20 * 19) / 23, (20 * 6 + 30 * 18) / 24])
    with pytest.raises(UnknownTag, match="unknown tag 'nope'"):
        client.get_spans("nope", RANGE)


def test_the_store_client_reads_every_catalogue_name(odd_names, pg_url):
    tenant, _, root, _ = odd_names
    with Client(store=root, tenant=tenant, source_url=pg_url) as client:
        check_reads(client)


def test_the_http_client_reads_every_catalogue_name(odd_names, service):
    tenant, key, _, _ = odd_names
    # The empty name goes as GET /v1/spans/, the long one as POST /v1/spans.
    assert SpansQuery(tag_name=EMPTY).method == "GET"
    assert SpansQuery(tag_name=LONG).method == "POST"
    with Client(host=service, tenant=tenant, api_key=key) as client:
        check_reads(client)


def test_raw_http_forms_address_the_names(odd_names, service):
    tenant, key, _, _ = odd_names
    window = {"start": RANGE[0].isoformat(), "end": RANGE[1].isoformat()}
    with httpx.Client(
        base_url=service, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as http:
        for name, tag_id in ((EMPTY, 1), (LONG, 2)):
            path = "/v1/spans/" + quote(name, safe="")
            assert len(path) > MAX_SPANS_PATH_BYTES or name == EMPTY
            by_path = http.get(path, params=window)
            by_body = http.post("/v1/spans", json={"tag_name": name, **window})
            for answer in (by_path, by_body):
                assert answer.status_code == 200, answer.text[:200]
                values = [span["value_double"] for span in answer.json()]
                assert values == expected_values(tag_id)
        by_query = http.get("/v1/metrics/data", params={**window, "tag": [EMPTY, LONG]})
        assert by_query.status_code == 200, by_query.text[:200]
        assert len(by_query.json()) == 6
        refused = http.post("/v1/spans", json={"tag": LONG, **window})
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_argument"


def test_names_up_to_the_cap_fit_the_default_limits_and_longer_ones_are_refused(odd_names, service):
    tenant, key, root, _ = odd_names
    settings = Settings()
    assert settings.max_body_bytes >= LONGEST_NAME_BODY_BYTES >= 6 * MAX_TAG_NAME_BYTES
    assert settings.max_header_bytes >= MAX_SPANS_PATH_BYTES + 4096
    window = {"start": RANGE[0].isoformat(), "end": RANGE[1].isoformat()}
    at_cap = [
        "\x01" * MAX_TAG_NAME_BYTES,  # JSON escapes each byte as \u0001: 6 bytes
        "😀" * (MAX_TAG_NAME_BYTES // 4),  # 4 bytes each, a surrogate pair in ASCII JSON
    ]
    with httpx.Client(
        base_url=service, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as http:
        for name in at_cap:
            answer = http.post("/v1/spans", json={"tag_name": name, **window})
            assert answer.status_code == 404 and answer.json()["error"] == "unknown_tag"
        over = "é" * (MAX_TAG_NAME_BYTES // 2 + 1)
        answer = http.post("/v1/metrics/data", json={"tag": [over], **window})
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_name"
        assert "at most 65,536 bytes" in answer.json()["message"]
    with Client(host=service, tenant=tenant, api_key=key) as client:
        with pytest.raises(UnknownTag):
            client.get_spans(at_cap[1], RANGE)
        with pytest.raises(InvalidName):
            client.get_spans(over, RANGE)
    with pytest.raises(InvalidName):
        Client(store=root, tenant=tenant).get_metric_data([over], RANGE)
