"""The API keys file under concurrent changes and when corrupt (issue 17): concurrent
`tagflow keys` processes lose no key and bring no revoked key back, and a corrupt file makes
the service answer every caller with the same generic 503 while the log says what is wrong.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from tagflow.errors import AuthenticationFailed
from tagflow.readapi.errors import UNAVAILABLE_MESSAGE
from tagflow.readapi.server import keys as keys_module
from tagflow.readapi.server.app import create_app
from tagflow.readapi.server.keys import FORMAT, KeyFileError, KeyStore
from tagflow.readapi.server.limits import ServerLimits, uvicorn_config

CHANGES = 50  # half adds, half revokes, all at once


@contextmanager
def serving(app) -> Iterator[httpx.Client]:
    """`app` served as `tagflow serve` serves it, on a loopback port, in a thread."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = uvicorn_config(app, ServerLimits.from_settings(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the test server did not start"
        time.sleep(0.01)
    try:
        port = listener.getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


def keys_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tagflow.readapi.server.keys", *args]


def test_50_concurrent_adds_and_revokes_lose_nothing_and_resurrect_nothing(tmp_path):
    file = tmp_path / "keys.json"
    store = KeyStore(file)
    doomed = [store.add("acme") for _ in range(CHANGES // 2)]
    kept_key, _ = store.add("globex")
    revokes = [
        keys_command("revoke", "acme", "--key-id", entry.key_id, "--file", str(file))
        for _, entry in doomed
    ]
    adds = [keys_command("add", f"tenant_{n}", "--file", str(file)) for n in range(len(doomed))]
    # Interleaved and started together, so adds read the file while revokes rewrite it.
    started = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for pair in zip(revokes, adds, strict=True)
        for command in pair
    ]
    finished = [(process.communicate(timeout=120), process.returncode) for process in started]
    assert [code for _, code in finished] == [0] * CHANGES, [err for (_, err), _ in finished]
    revoked = [out.strip() for (out, _), _ in finished[0::2]]
    printed = [out.strip() for (out, _), _ in finished[1::2]]
    assert revoked == ["revoked 1 key of tenant acme"] * len(doomed)

    after = KeyStore(file)
    # Nothing lost: every printed key opens its tenant, and the untouched one still works.
    for number, key in enumerate(printed):
        assert after.verify(key) == f"tenant_{number}"
    assert after.verify(kept_key) == "globex"
    # Nothing resurrected: no revoked key works, whichever add wrote after its revoke.
    for key, _ in doomed:
        with pytest.raises(AuthenticationFailed):
            after.verify(key)
    assert len(after.entries()) == len(printed) + 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json", "keys.json.lock"]


def test_a_change_waits_for_the_lock_and_gives_up_clearly(tmp_path, monkeypatch):
    file = tmp_path / "keys.json"
    KeyStore(file).add("acme")
    monkeypatch.setattr(keys_module, "LOCK_TIMEOUT_S", 0.3)
    descriptor = os.open(tmp_path / "keys.json.lock", os.O_RDWR)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        with pytest.raises(KeyFileError, match="try again"):
            KeyStore(file).add("globex")
    finally:
        os.close(descriptor)
    assert KeyStore(file).tenants() == ["acme"]
    KeyStore(file).add("globex")
    assert KeyStore(file).tenants() == ["acme", "globex"]


CORRUPT_FILES = {
    "not json": b"{not json",
    "a json list": b"[]",
    "empty": b"",
    "null": b"null",
    "not utf-8": b"\xff\xfe\x00garbage",
    "deeply nested": b"[" * 100_000,
    "another format": json.dumps({"format": "other/1", "keys": []}).encode(),
    "keys not a list": json.dumps({"format": FORMAT, "keys": {}}).encode(),
    "an entry not an object": json.dumps({"format": FORMAT, "keys": [1]}).encode(),
    "an entry missing fields": json.dumps({"format": FORMAT, "keys": [{"tenant": "a"}]}).encode(),
    "a bad salt": json.dumps(
        {
            "format": FORMAT,
            "keys": [{"tenant": "acme", "key_id": "1", "salt": "zz", "sha256": "00"}],
        }
    ).encode(),
    "a hostile tenant": json.dumps(
        {
            "format": FORMAT,
            "keys": [{"tenant": "../etc", "key_id": "1", "salt": "00", "sha256": "00"}],
        }
    ).encode(),
}


@pytest.mark.parametrize("content", CORRUPT_FILES.values(), ids=CORRUPT_FILES.keys())
def test_a_corrupt_keys_file_is_the_same_generic_503_for_every_caller(tmp_path, caplog, content):
    file = tmp_path / "keys.json"
    key, _ = KeyStore(file).add("acme")
    other_key, _ = KeyStore(tmp_path / "other.json").add("acme")
    (tmp_path / "store").mkdir()
    with serving(create_app(tmp_path / "store", file)) as client:
        corrupt_and_call(client, tmp_path, file, key, other_key, content, caplog)


def corrupt_and_call(client, tmp_path, file, key, other_key, content, caplog) -> None:
    assert client.get("/v1/tags", headers={"Authorization": f"Bearer {key}"}).status_code != 503
    replacement = tmp_path / "replacement"
    replacement.write_bytes(content)
    os.replace(replacement, file)

    callers = [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Bearer {key}"},
        {"Authorization": f"Bearer {key}", "X-Tagflow-Tenant": "acme"},
        {"Authorization": f"Bearer {other_key}", "X-Tagflow-Tenant": "globex"},
        {"Authorization": "Bearer " + "x" * 10_000},
    ]
    caplog.set_level(logging.ERROR)
    answers = []
    for headers in callers:
        answers.append(client.get("/v1/tags", headers=headers))
        answers.append(client.post("/v1/metrics/samples", json={}, headers=headers))
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.json() == {"error": "service_unavailable", "message": UNAVAILABLE_MESSAGE}
    assert len({answer.content for answer in answers}) == 1
    # The operator learns why, once (not once per request), without the path or any key.
    logged = [r.getMessage() for r in caplog.records if "keys file" in r.getMessage()]
    assert len(logged) == 1 and "unusable" in logged[0]
    assert str(tmp_path) not in logged[0] and key not in logged[0]
    assert client.get("/v1/health").status_code == 200

    # Fixed (here: a valid file put back), the same service answers again.
    restored = KeyStore(tmp_path / "restored.json")
    restored.add("acme", key)
    os.replace(tmp_path / "restored.json", file)
    assert client.get("/v1/tags", headers={"Authorization": f"Bearer {key}"}).status_code != 503


@pytest.mark.parametrize("command", [["list"], ["add", "acme"], ["revoke", "acme"]])
def test_keys_commands_on_a_corrupt_file_are_a_clear_error_and_change_nothing(tmp_path, command):
    file = tmp_path / "keys.json"
    file.write_bytes(b"[]")
    result = subprocess.run(
        keys_command(*command, "--file", str(file)), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "keys file" in result.stderr and "holds a JSON list, not an object" in result.stderr
    assert "Traceback" not in result.stderr and str(tmp_path) not in result.stderr
    assert file.read_bytes() == b"[]"
