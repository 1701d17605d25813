"""The API keys file: hashed entries, one tenant per key, revocation, and its CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tagflow.errors import AuthenticationFailed, InvalidName
from tagflow.readapi.server.keys import KeyFileError, KeyStore


def test_a_key_opens_exactly_its_tenant(tmp_path):
    keys = KeyStore(tmp_path / "keys.json")
    key_a, _ = keys.add("acme")
    key_b, _ = keys.add("globex")
    assert keys.verify(key_a) == "acme" and keys.verify(key_a, "acme") == "acme"
    assert keys.verify(key_b) == "globex"
    for key, tenant in (
        (key_a, "globex"),
        (key_b, "acme"),
        (key_a, "nobody"),
        ("nope", None),
        ("", None),
        (None, None),
        (key_a + " ", "acme"),
        ("x" * 10_000, None),
    ):
        with pytest.raises(AuthenticationFailed) as failure:
            keys.verify(key, tenant)
        assert str(failure.value) == "missing or invalid API key"


def test_keys_are_stored_salted_and_hashed_only(tmp_path):
    keys = KeyStore(tmp_path / "keys.json")
    key, entry = keys.add("acme")
    same_key_elsewhere = KeyStore(tmp_path / "other.json")
    _, other = same_key_elsewhere.add("acme", key)
    text = (tmp_path / "keys.json").read_text()
    assert key not in text
    assert json.loads(text)["keys"][0]["sha256"] != other.digest.hex()  # salted
    assert key.startswith(f"tf_{entry.key_id}_")


def test_one_key_cannot_be_registered_for_two_tenants(tmp_path):
    keys = KeyStore(tmp_path / "keys.json")
    key, _ = keys.add("acme")
    with pytest.raises(KeyFileError):
        keys.add("globex", key)
    assert keys.tenants() == ["acme"]


def test_revoke_one_key_or_all_keys_of_a_tenant(tmp_path):
    keys = KeyStore(tmp_path / "keys.json")
    first, entry = keys.add("acme")
    second, _ = keys.add("acme")
    other, _ = keys.add("globex")
    assert keys.revoke("acme", entry.key_id) == 1
    with pytest.raises(AuthenticationFailed):
        keys.verify(first)
    assert keys.verify(second) == "acme"
    assert keys.revoke("acme") == 1
    with pytest.raises(AuthenticationFailed):
        keys.verify(second)
    assert keys.verify(other) == "globex"


def test_hostile_tenant_names_and_malformed_files_are_refused(tmp_path):
    keys = KeyStore(tmp_path / "keys.json")
    with pytest.raises(InvalidName):
        keys.add("../etc")
    (tmp_path / "keys.json").write_text("{not json")
    with pytest.raises(KeyFileError) as failure:
        keys.verify("anything")
    assert str(tmp_path) not in str(failure.value)


def test_keys_cli_adds_lists_and_revokes(tmp_path):
    file = str(tmp_path / "keys.json")

    def run(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "tagflow.readapi.server.keys", *args, "--file", file]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    added = run("add", "acme")
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    assert KeyStore(file).verify(key) == "acme"
    listed = run("list")
    assert "acme" in listed.stdout and key not in listed.stdout
    assert run("revoke", "acme").returncode == 0
    with pytest.raises(AuthenticationFailed):
        KeyStore(file).verify(key)
    assert run("add", "bad name!").returncode == 2
