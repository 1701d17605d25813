"""One read may not build more than the configured answer: buckets × tags (TAGFLOW_MAX_CELLS)
and rows decoded from the datasets (TAGFLOW_MAX_ROWS) are refused up front with a 4xx that
names the limit and how to narrow the read, and refusing costs the service no memory."""

from __future__ import annotations

import gc
import resource
import time

import httpx
import pytest

from tagflow.errors import AnswerTooLarge
from tagflow.io_managers import DatasetStore
from tagflow.readapi import Client
from tagflow.readapi.engine.limits import AnswerLimits
from tagflow.readapi.server.app import create_app
from tagflow.settings import Settings
from tests.conftest import rss_bytes
from tests.readapi.conftest import BackgroundServer
from tests.security.test_server_limits import MIB, PeakRss, tagflow_serve

DAY = ("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z")
THREE_DAYS = ("2026-03-01T00:00:00Z", "2026-03-04T00:00:00Z")
# The largest answer, asked this many times after the one that sets the baseline.
ANSWERS = 3
# What the server may keep after such an answer: about 30-60 MiB alone, up to 70 beside other
# test workers, against about 200 MiB of growth while answering.
KEPT = 128 * MIB


def numeric_tags(plant, tenant: str, count: int) -> list[str]:
    tags = DatasetStore(plant.root).read("tags", tenant).to_pylist()
    names = [tag["tag_name"] for tag in tags if tag["value_kind"] == "numeric"]
    assert len(names) >= count
    return names[:count]


def test_the_client_refuses_more_cells_than_configured(plant, monkeypatch):
    monkeypatch.setenv("TAGFLOW_MAX_CELLS", "2000")
    tenant = plant.tenants[0]
    client = Client(tenant=tenant, store=plant.root, allow_source=False)
    two = numeric_tags(plant, tenant, 2)
    # 1440 one-minute buckets of one tag fit; of two tags (2880 cells) they do not.
    assert len(client.sample_metric_data("1m", tag_names=two[:1], time_range=DAY)) == 1440
    with pytest.raises(
        AnswerTooLarge, match=r"1440 buckets × 2 tags = 2880 cells .*\(2000, TAGFLOW_MAX_CELLS\)"
    ):
        client.sample_metric_data("1m", tag_names=two, time_range=DAY)


def test_the_client_refuses_more_rows_than_configured(plant, monkeypatch):
    tenant = plant.tenants[0]
    unlimited = Client(tenant=tenant, store=plant.root, allow_source=False)
    rows = unlimited.get_metric_arrow(None, THREE_DAYS).num_rows
    assert rows > 100
    monkeypatch.setenv("TAGFLOW_MAX_ROWS", str(rows - 1))
    limited = Client(tenant=tenant, store=plant.root, allow_source=False)
    with pytest.raises(
        AnswerTooLarge,
        match=rf"more rows of transitions than one answer may \({rows - 1}, TAGFLOW_MAX_ROWS\)",
    ):
        limited.get_metric_arrow(None, THREE_DAYS)
    one = numeric_tags(plant, tenant, 1)
    assert limited.get_metric_arrow(one, THREE_DAYS).num_rows < rows  # a narrower read passes
    # One-minute buckets of every tag decode the days' 1-minute samples: 36 × 1440 rows × 3.
    monkeypatch.setenv("TAGFLOW_MAX_ROWS", "100000")
    with pytest.raises(AnswerTooLarge, match=r"rows of samples_1m"):
        Client(tenant=tenant, store=plant.root, allow_source=False).sample_metric_data(
            "1m", time_range=THREE_DAYS
        )


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_the_service_refuses_with_a_4xx_naming_the_limit_and_keeps_its_memory(plant, keys_file):
    """Ten tags of one-second buckets over 3 days would be 2.6 M cells: refused before
    anything is read or allocated, every time."""
    app = create_app(
        plant.root, keys_file, answer_limits=AnswerLimits(max_cells=1_000_000, max_rows=10_000_000)
    )
    tenant = plant.tenants[0]
    with BackgroundServer(app) as server:
        names = numeric_tags(plant, tenant, 10)
        body = {"tag": names, "bucket_width": "1s", "start": THREE_DAYS[0], "end": THREE_DAYS[1]}
        headers = {"Authorization": f"Bearer {plant.key(tenant)}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
            first = http.post("/v1/metrics/samples", json=body)
            assert first.status_code == 400
            assert first.json()["error"] == "answer_too_large"
            assert "259200 buckets × 10 tags" in first.json()["message"]
            assert "1000000, TAGFLOW_MAX_CELLS" in first.json()["message"]
            gc.collect()
            before = rss_mib()
            for _ in range(20):
                assert http.post("/v1/metrics/samples", json=body).status_code == 400
            gc.collect()
            assert rss_mib() - before < 20


@pytest.mark.parametrize("accept", ["application/vnd.apache.arrow.stream", "application/json"])
def test_the_largest_answer_the_defaults_allow_stays_within_the_servers_memory_budget(
    plant, keys_file, tmp_path, accept
):
    """Issue 17's target, measured from outside `tagflow serve` with its default limits: the
    largest bucketed answer they allow (one-second buckets of as many tags as fit in
    TAGFLOW_MAX_CELLS over a day, computed from transitions) grows the server by less than
    512 MiB, and gives the memory back afterwards (to where it was after the same answer once
    before: its footers cached, its code imported), answer after answer."""
    tenant = plant.tenants[0]
    count = Settings().max_cells // 86_400
    names = numeric_tags(plant, tenant, count)
    body = {"tag": names, "bucket_width": "1s", "start": DAY[0], "end": DAY[1]}
    headers = {"Authorization": f"Bearer {plant.key(tenant)}", "Accept": accept}
    with (
        tagflow_serve(tmp_path, served=(plant.root, keys_file)) as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=120) as http,
    ):
        # The same answer once before: the footers it reads are cached, its code imported, and
        # what the allocator keeps for the next answer of its size is kept.
        assert http.post("/v1/metrics/samples", json=body).status_code == 200
        time.sleep(1)
        baseline = rss_bytes(server.pid)
        afters = []
        with PeakRss(server.pid) as rss:
            for _ in range(ANSWERS):
                with http.stream("POST", "/v1/metrics/samples", json=body) as answer:
                    assert answer.status_code == 200
                    size = sum(len(chunk) for chunk in answer.iter_bytes())
                assert size > count * 86_400  # every cell came back
                afters.append(settled_rss(server.pid, baseline + KEPT))
    message = (
        f"RSS {baseline / MIB:.0f} MiB, peak {rss.peak / MIB:.0f}, after each answer "
        f"{[round(after / MIB) for after in afters]}"
    )
    assert rss.peak - baseline < 512 * MIB, message
    # What the allocator keeps is far less than one answer (about 200 MiB here), and answers
    # after it reuse it: no ratchet (the last answer ends where the first left it).
    assert max(afters) < baseline + KEPT, message
    assert afters[-1] < afters[0] + 64 * MIB, message


def settled_rss(pid: int, below: int) -> int:
    """The server's RSS once the trim after an answer has run: it runs off the request's path,
    half a second after the answer, and on a busy machine it takes longer to show."""
    time.sleep(1)
    deadline = time.monotonic() + 10
    rss = rss_bytes(pid)
    while rss >= below and time.monotonic() < deadline:
        time.sleep(0.5)
        rss = rss_bytes(pid)
    return rss
