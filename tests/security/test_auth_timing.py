"""Authentication failures are indistinguishable from outside. A wrong key for an existing
tenant, another tenant's key and any key for a tenant that does not exist get the same status,
headers and body; they cost the service the same work, counted exactly (every stored key is
hashed and compared once, whichever tenant a request names and however many keys it has);
and their latencies are the same within a bound that an implementation returning early for
unknown tenants could not meet. The timing check measures its own power: requests without a
key skip the hashing, and the harness must see that gap."""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tagflow.readapi.server import keys as keys_module
from tagflow.readapi.server.app import create_app
from tagflow.readapi.server.keys import FORMAT, KeyEntry, KeyStore, _digest
from tests.readapi.conftest import BackgroundServer

# Enough stored keys that checking one key costs milliseconds: the cost an early return
# would save is then far above the noise of loopback HTTP on a busy machine.
TENANTS = 1500
ROUNDS = 200
ATTEMPTS = 3
MIN_CHECK_MS = 0.5
MANY_KEYS = "many_keys"  # a tenant with three keys
ONE_KEY = "one_key"


@dataclass(frozen=True)
class Service:
    url: str
    keys: KeyStore
    key_of: dict[str, str]


def write_keys_file(path: Path, tenants: int) -> dict[str, str]:
    """A keys file with `tenants` filler tenants of one key each plus MANY_KEYS (three keys)
    and ONE_KEY; returns a key of each named tenant. Written at once: adding thousands of
    keys one by one would rewrite the file thousands of times."""
    entries, key_of = [], {}
    names = [MANY_KEYS, MANY_KEYS, MANY_KEYS, ONE_KEY] + [f"filler_{n}" for n in range(tenants)]
    for number, tenant in enumerate(names):
        key = f"tf_{number:08x}_secret_{tenant}_{number}"
        salt = number.to_bytes(16, "big")
        entries.append(KeyEntry(tenant, f"{number:08x}", salt, _digest(salt, key), ""))
        key_of.setdefault(tenant, key)
    payload = {"format": FORMAT, "keys": [entry.to_json() for entry in entries]}
    path.write_text(json.dumps(payload))
    return key_of


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[Service]:
    folder = tmp_path_factory.mktemp("auth-timing")
    key_of = write_keys_file(folder / "api_keys.json", TENANTS)
    keys = KeyStore(folder / "api_keys.json")
    with BackgroundServer(create_app(folder / "store", keys, None)) as server:
        yield Service(server.url, keys, key_of)


def failures(service: Service) -> dict[str, dict[str, str]]:
    """Headers of every kind of failed authentication that carries a key."""
    wrong = "Bearer tf_00000000_not_a_stored_key"
    return {
        "wrong key, tenant with three keys": {
            "Authorization": wrong,
            "X-Tagflow-Tenant": MANY_KEYS,
        },
        "wrong key, tenant with one key": {"Authorization": wrong, "X-Tagflow-Tenant": ONE_KEY},
        "another tenant's key": {
            "Authorization": f"Bearer {service.key_of[ONE_KEY]}",
            "X-Tagflow-Tenant": MANY_KEYS,
        },
        "unknown tenant": {"Authorization": wrong, "X-Tagflow-Tenant": "no_such_tenant"},
        "unknown tenant, valid key": {
            "Authorization": f"Bearer {service.key_of[MANY_KEYS]}",
            "X-Tagflow-Tenant": "no_such_tenant",
        },
        "wrong key, no tenant named": {"Authorization": wrong},
    }


def test_every_failure_gets_the_same_answer_after_the_same_work(service, monkeypatch):
    hashed: list[int] = []

    def counting_digest(salt: bytes, key: str) -> bytes:
        hashed[-1] += 1
        return _digest(salt, key)

    monkeypatch.setattr(keys_module, "_digest", counting_digest)
    answers, work = set(), {}
    with httpx.Client(base_url=service.url) as http:
        http.get("/v1/tags")  # the keys file is parsed once, outside the counts
        for reason, headers in failures(service).items():
            hashed.append(0)
            answer = http.get("/v1/tags", headers=headers)
            assert answer.status_code == 401, reason
            answers.add((answer.content, answer.headers.get("www-authenticate")))
            work[reason] = hashed[-1]
    assert len(answers) == 1
    stored = len(service.keys.entries())
    assert work == dict.fromkeys(work, stored), work  # one hash per stored key, every time


def interleaved_latencies(
    http: httpx.Client, kinds: dict[str, dict[str, str]], rounds: int, rng: random.Random
) -> dict[str, list[float]]:
    """Seconds per request of each kind; each round sends every kind once in a shuffled
    order, so load on the machine and order effects fall on all kinds alike."""
    latencies: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(rounds):
        for kind in rng.sample(list(kinds), len(kinds)):
            began = time.perf_counter()
            answer = http.get("/v1/tags", headers=kinds[kind])
            latencies[kind].append(time.perf_counter() - began)
            assert answer.status_code == 401
    return latencies


def paired_gap_ms(latencies: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of a's latency minus b's in the same round: drift in the machine's
    load cancels out, which a difference of two medians would not do."""
    return statistics.median(x - y for x, y in zip(latencies[a], latencies[b], strict=True)) * 1000


def test_wrong_key_and_unknown_tenant_take_the_same_time(service, capsys):
    kinds = {
        "wrong key": failures(service)["wrong key, tenant with three keys"],
        "unknown tenant": failures(service)["unknown tenant"],
        "no key": {"X-Tagflow-Tenant": MANY_KEYS},  # no hashing at all: the control
    }
    rng = random.Random(20260302)
    attempts = []
    with httpx.Client(base_url=service.url) as http:
        interleaved_latencies(http, kinds, 20, rng)  # warm-up
        # A distinguishing implementation shows its gap in every attempt; a busy machine
        # rarely spoils three in a row.
        for _ in range(ATTEMPTS):
            latencies = interleaved_latencies(http, kinds, ROUNDS, rng)
            check = paired_gap_ms(latencies, "wrong key", "no key")
            gap = paired_gap_ms(latencies, "wrong key", "unknown tenant")
            attempts.append((check, gap))
            # Power: the harness sees the key check that requests without a key skip (about
            # 1.5 ms here)... and no such gap between a wrong key and an unknown tenant.
            if check > MIN_CHECK_MS and abs(gap) < check / 2:
                break
    with capsys.disabled():
        print(
            f"\nauth timing, {ROUNDS} shuffled rounds per attempt, paired medians (ms): "
            + "; ".join(f"check {c:.2f}, wrong key - unknown tenant {g:+.2f}" for c, g in attempts)
        )
    check, gap = attempts[-1]
    assert check > MIN_CHECK_MS, "the harness could not see the key check itself; too noisy"
    assert abs(gap) < check / 2
