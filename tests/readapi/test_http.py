"""The HTTP service on a loopback port: the same answers as the store transport, JSON and
Arrow forms, typed errors, OpenAPI docs, and `tagflow serve`."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx
import pyarrow as pa
import pytest
from fastapi.responses import StreamingResponse

from tagflow.readapi import Client, InvalidArgument, InvalidTimeRange, UnknownTag
from tagflow.readapi.server.routes import _respond
from tagflow.readapi.wire import ARROW_STREAM, CHUNK_BYTES, decode_ipc
from tests.conftest import free_port, wait_until_serving

D1 = datetime(2026, 3, 1, tzinfo=UTC)
# Includes day 4, which is not materialised: both transports fall back to the source.
RANGE = (D1 + timedelta(hours=5, seconds=0.5), D1 + timedelta(days=3, hours=2))


@pytest.fixture(scope="module", params=[0, 1], ids=["tenant A", "tenant B"])
def pair(request, plant, service_url, pg_url):
    tenant = plant.tenants[request.param]
    with (
        Client(store=plant.root, tenant=tenant, source_url=pg_url) as local,
        Client(host=service_url, tenant=tenant, api_key=plant.key(tenant)) as remote,
    ):
        yield local, remote


def frames_equal(a, b) -> bool:
    return list(a.columns) == list(b.columns) and a.equals(b)


def test_tags_are_identical_through_both_transports(pair):
    local, remote = pair
    assert remote.get_tags() == local.get_tags()
    assert remote.get_tags(RANGE) == local.get_tags(RANGE)


def test_spans_are_identical_through_both_transports(pair):
    local, remote = pair
    for tag in local.get_tags():
        assert remote.get_spans(tag.name, RANGE) == local.get_spans(tag.name, RANGE)
    name = "plant/special/mixed"
    assert remote.get_spans(name, RANGE, limit=3) == local.get_spans(name, RANGE, limit=3)


def test_metric_data_is_identical_through_both_transports(pair):
    local, remote = pair
    assert frames_equal(remote.get_metric_data(None, RANGE), local.get_metric_data(None, RANGE))
    names = ["plant/special/mixed", "plant/special/reborn"]
    remote_arrow, local_arrow = (
        remote.get_metric_arrow(names, RANGE),
        local.get_metric_arrow(names, RANGE),
    )
    assert remote_arrow.schema == local_arrow.schema
    assert remote_arrow.to_pandas().equals(local_arrow.to_pandas())


@pytest.mark.parametrize(
    "width, offset, aggregate",
    [
        ("1h", "0s", "average"),
        ("15m", "0s", "last"),
        ("90m", "30m", "max"),
        ("1d", "0s", "count"),
        ("7m13s", "11s", "first"),
        ("2h", "0s", "min"),
    ],
)
def test_samples_are_identical_through_both_transports(pair, width, offset, aggregate):
    local, remote = pair
    kwargs = {"aggregate_function": aggregate, "bucket_offset": offset, "time_range": RANGE}
    assert frames_equal(
        remote.sample_metric_data(width, **kwargs), local.sample_metric_data(width, **kwargs)
    )


def test_derivative_and_counter_rate_are_identical_through_both_transports(pair):
    local, remote = pair
    assert frames_equal(
        remote.derivative("1h", time_range=RANGE), local.derivative("1h", time_range=RANGE)
    )
    assert frames_equal(
        remote.counter_rate("30m", time_range=RANGE), local.counter_rate("30m", time_range=RANGE)
    )


def test_typed_errors_come_back_through_http(pair):
    _, remote = pair
    with pytest.raises(UnknownTag, match="get_tags"):
        remote.get_spans("no/such/tag", RANGE)
    with pytest.raises(InvalidArgument, match="locf"):
        remote.sample_metric_data("1h", bucket_function="linear", time_range=RANGE)
    with pytest.raises(InvalidArgument, match="aggregate_function"):
        remote.sample_metric_data("1h", aggregate_function="median", time_range=RANGE)
    with pytest.raises(InvalidTimeRange):
        remote.sample_metric_data("1s", time_range=(D1, D1 + timedelta(days=30)))


def auth(plant, tenant=None) -> dict[str, str]:
    tenant = tenant or plant.tenants[0]
    return {"Authorization": f"Bearer {plant.key(tenant)}"}


def test_json_is_the_default_and_arrow_is_negotiated(plant, service_url):
    params = {"start": "2026-03-01T00:00:00Z", "end": "2026-03-02T00:00:00Z"}
    url = f"{service_url}/v1/spans/plant/special/constant"
    as_json = httpx.get(url, params=params, headers=auth(plant))
    assert as_json.status_code == 200 and as_json.headers["content-type"] == "application/json"
    [span] = as_json.json()
    assert span["value_double"] == 42.0 and span["raw_end_at"] is None
    for extra_params, headers in (({"format": "arrow"}, {}), ({}, {"Accept": ARROW_STREAM})):
        answer = httpx.get(
            url, params={**params, **extra_params}, headers={**auth(plant), **headers}
        )
        assert answer.headers["content-type"] == ARROW_STREAM
        assert decode_ipc(answer.content).column("value_double").to_pylist() == [42.0]
    samples = httpx.get(
        f"{service_url}/v1/metrics/samples",
        params={**params, "bucket_width": "6h", "tag": ["plant/special/constant"]},
        headers=auth(plant),
    ).json()
    assert samples["columns"] == ["time", "plant/special/constant"]
    assert samples["rows"][0] == ["2026-03-01T00:00:00+00:00", 42.0]


@pytest.mark.parametrize(
    "path, extra",
    [
        ("/v1/spans/plant/special/mixed", {}),
        ("/v1/tags", {}),
        ("/v1/metrics/data", {}),
        ("/v1/metrics/samples", {"bucket_width": "1h", "aggregate_function": "count"}),
    ],
)
def test_columns_hold_the_json_answers_values_column_by_column(plant, service_url, path, extra):
    """format=columns: {"columns", "data"} with one array per column, each value as the records
    (or wide rows) form writes it: times with offset, NaN as a string, null as null."""
    params = {"start": "2026-03-01T05:00:00.5Z", "end": "2026-03-03T02:00:00Z", **extra}
    url = f"{service_url}{path}"
    as_records = httpx.get(url, params=params, headers=auth(plant)).json()
    as_columns = httpx.get(url, params={**params, "format": "columns"}, headers=auth(plant))
    assert as_columns.status_code == 200
    assert as_columns.headers["content-type"] == "application/json"
    answer = as_columns.json()
    if isinstance(as_records, dict):  # the wide form: its rows, transposed
        assert answer["columns"] == as_records["columns"]
        assert answer["data"] == [list(column) for column in zip(*as_records["rows"], strict=True)]
        return
    assert as_records, "the range holds rows"
    assert answer["columns"] == list(as_records[0])
    for name, values in zip(answer["columns"], answer["data"], strict=True):
        assert values == [record[name] for record in as_records], name


def test_small_answers_go_in_one_piece_and_large_ones_are_streamed(plant, service_url):
    """A small answer is sent whole with its length (no hop to a thread per chunk); one past a
    chunk of Arrow data is streamed, never encoded whole; both decode to the same table."""
    params = {"start": "2026-03-01T00:00:00Z", "end": "2026-03-04T00:00:00Z", "format": "arrow"}
    small = httpx.get(
        f"{service_url}/v1/spans/plant/special/constant", params=params, headers=auth(plant)
    )
    assert "content-length" in small.headers and "transfer-encoding" not in small.headers
    with Client(store=plant.root, tenant=plant.tenants[0], allow_source=False) as local:
        want = local.get_spans_arrow("plant/special/constant", (D1, D1 + timedelta(days=3)))
    assert decode_ipc(small.content).equals(want)
    large = pa.table({"x": pa.array(range(2 * CHUNK_BYTES // 8), pa.int64())})
    for answer_format in ("arrow", "json", "columns"):
        assert isinstance(_respond(large, answer_format, False), StreamingResponse)
    assert not isinstance(_respond(large.slice(0, 1000), "arrow", False), StreamingResponse)


@pytest.mark.parametrize(
    "path, params",
    [
        ("/v1/tags", {"start": "2026-03-01T00:00:00", "end": "2026-03-02T00:00:00Z"}),  # naive
        ("/v1/tags", {"start": "2026-03-02T00:00:00Z", "end": "2026-03-01T00:00:00Z"}),
        ("/v1/tags", {"start": "2026-03-02T00:00:00Z"}),
        ("/v1/tags", {"start": "1; DROP TABLE tag_data", "end": "2026-03-01T00:00:00Z"}),
        ("/v1/spans/plant/special/constant", {"limit": "0"}),
        ("/v1/spans/plant/special/constant", {"limit": "-3"}),
        ("/v1/spans/plant/special/constant", {"limit": "ten"}),
        ("/v1/metrics/samples", {"bucket_width": "0s"}),
        ("/v1/metrics/samples", {"bucket_width": "-15m"}),
        ("/v1/metrics/samples", {"bucket_width": "15"}),
        ("/v1/metrics/samples", {"bucket_width": "1h", "bucket_function": "linear"}),
        ("/v1/metrics/samples", {"bucket_width": "1h", "format": "xml"}),
        ("/v1/tags", {"allow_source": "maybe"}),
    ],
)
def test_hostile_parameters_are_clear_400s(plant, service_url, path, params):
    answer = httpx.get(service_url + path, params=params, headers=auth(plant))
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert set(body) == {"error", "message"} and body["message"]
    assert "Traceback" not in answer.text and str(plant.root) not in answer.text


def test_not_materialised_without_fallback_is_409_naming_days(plant, service_url):
    answer = httpx.get(
        f"{service_url}/v1/tags",
        params={
            "start": "2026-03-03T00:00:00Z",
            "end": "2026-03-05T00:00:00Z",
            "allow_source": "false",
        },
        headers=auth(plant),
    )
    assert answer.status_code == 409
    assert answer.json()["error"] == "not_materialised"
    assert "2026-03-04 (1 day)" in answer.json()["message"]


def test_long_tag_lists_go_in_a_post_body(plant, service_url):
    names = [tag.name for tag in Client(store=plant.root, tenant=plant.tenants[0]).get_tags()]
    answer = httpx.post(
        f"{service_url}/v1/metrics/samples",
        json={
            "bucket_width": "1d",
            "tag": names * 40,
            "start": "2026-03-01T00:00:00Z",
            "end": "2026-03-03T00:00:00Z",
            "format": "arrow",
        },
        headers=auth(plant),
    )
    assert answer.status_code == 200
    assert decode_ipc(answer.content).column_names == ["time", *names]


def test_openapi_docs_are_served(service_url):
    assert httpx.get(f"{service_url}/docs").status_code == 200
    paths = httpx.get(f"{service_url}/openapi.json").json()["paths"]
    for path in ("/v1/tags", "/v1/spans/{tag_name}", "/v1/metrics/data", "/v1/metrics/samples"):
        assert path in paths


def test_tagflow_serve_runs_the_service(plant, keys_file, pg_url, tmp_path):
    port = free_port()
    env = {**os.environ, "TAGFLOW_SOURCE_URL": pg_url}
    command = [
        sys.executable,
        "-m",
        "tagflow.cli",
        "serve",
        "--store",
        str(plant.root),
        "--port",
        str(port),
        "--keys-file",
        str(keys_file),
    ]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(server, url)
        tenant = plant.tenants[1]
        with Client(host=url, tenant=tenant, api_key=plant.key(tenant)) as remote:
            spans = remote.get_spans("plant/special/constant", (D1, D1 + timedelta(days=1)))
        assert len(spans) == 1 and spans[0].value == 42.0
    finally:
        server.terminate()
        output = server.communicate(timeout=20)[0].decode()
    assert plant.key(plant.tenants[1]) not in output


def test_arrow_ipc_round_trip_keeps_types():
    table = pa.table({"time": pa.array([D1], pa.timestamp("us", tz="UTC")), "x": [float("nan")]})
    from tagflow.readapi.wire import ipc_chunks

    assert decode_ipc(b"".join(ipc_chunks(table))).schema == table.schema
