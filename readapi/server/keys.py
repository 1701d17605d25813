"""Per-tenant API keys of the read service, kept hashed in a JSON file the operator manages.

Each entry maps one tenant to a salted SHA-256 of one key; a key opens exactly one tenant.
API keys are 256-bit random tokens, so a fast salted hash is enough (slow password hashes
exist to protect guessable passwords) and keeps verification within the latency budget.
Comparisons use hmac.compare_digest, and every check hashes the key against every entry of
the file whichever tenant it names, so timing does not tell which tenants exist or how many
keys they have. The file is re-read when it changes: a revoked key stops working on the next
request, without restarting the service.

Manage keys with `python -m readapi.keys add|revoke|list TENANT` (the file is
TAGFLOW_KEYS_FILE, default .tagflow/api_keys.json).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import typer

from tagflow.errors import AuthenticationFailed, TagflowError
from tagflow.names import validate_tenant_name
from tagflow.settings import Settings

FORMAT = "tagflow-api-keys/1"
_KEY_PREFIX = "tf_"
_MAX_KEY_LENGTH = 512


def _digest(salt: bytes, key: str) -> bytes:
    return hashlib.sha256(salt + key.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class KeyEntry:
    tenant: str
    key_id: str
    salt: bytes
    digest: bytes
    created_at: str

    def to_json(self) -> dict[str, str]:
        return {
            "tenant": self.tenant,
            "key_id": self.key_id,
            "salt": self.salt.hex(),
            "sha256": self.digest.hex(),
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, data: dict) -> KeyEntry:
        return cls(
            tenant=validate_tenant_name(data["tenant"]),
            key_id=str(data["key_id"]),
            salt=bytes.fromhex(data["salt"]),
            digest=bytes.fromhex(data["sha256"]),
            created_at=str(data.get("created_at", "")),
        )


class KeyFileError(TagflowError):
    """The keys file cannot be read or written (the message never contains key material)."""


class KeyStore:
    """The keys file: verification for the service, add/revoke/list for the operator."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._entries: list[KeyEntry] = []

    def __repr__(self) -> str:
        return f"KeyStore(entries={len(self._load())})"

    # ------------------------------------------------------------------ reading

    def _load(self) -> list[KeyEntry]:
        """Entries of the file, re-parsed only when its inode, size or mtime changed."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if stamp != self._stamp:
                self._entries = self._parse()
                self._stamp = stamp
            return self._entries

    def _parse(self) -> list[KeyEntry]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                raise ValueError("unknown format")
            return [KeyEntry.from_json(item) for item in data["keys"]]
        except (OSError, ValueError, KeyError, TypeError, TagflowError):
            raise KeyFileError(
                "the API keys file is unreadable or malformed; fix or recreate it with "
                "`python -m readapi.keys add TENANT`"
            ) from None

    def tenants(self) -> list[str]:
        return sorted({entry.tenant for entry in self._load()})

    def entries(self, tenant: str | None = None) -> list[KeyEntry]:
        return [e for e in self._load() if tenant is None or e.tenant == tenant]

    def verify(self, key: object, tenant: str | None = None) -> str:
        """The tenant that `key` opens (and it must be `tenant` when one is named); otherwise
        AuthenticationFailed with one message for every reason."""
        failure = AuthenticationFailed("missing or invalid API key")
        if not isinstance(key, str) or not key or len(key) > _MAX_KEY_LENGTH:
            raise failure
        matched: KeyEntry | None = None
        # Every entry is hashed and compared, with no early exit and whatever `tenant` is:
        # the work is the same for a wrong key, another tenant's key and an unknown tenant.
        for entry in self._load():
            if hmac.compare_digest(_digest(entry.salt, key), entry.digest):
                matched = entry
        if matched is None or (tenant is not None and matched.tenant != tenant):
            raise failure
        return matched.tenant

    # ------------------------------------------------------------------ managing

    def add(self, tenant: str, key: str | None = None) -> tuple[str, KeyEntry]:
        """Store a key for `tenant` (a new random one unless `key` is given, e.g. to import
        an existing key) and return (key, entry). The key itself is not stored."""
        tenant = validate_tenant_name(tenant)
        key_id = secrets.token_hex(4)
        if key is None:
            key = f"{_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        # A key travels in an Authorization header: anything but visible ASCII is refused by
        # HTTP clients or arrives changed, so such a key would be printed once and never work.
        if not 0 < len(key) <= _MAX_KEY_LENGTH or not all("!" <= c <= "~" for c in key):
            raise KeyFileError("an API key must be 1-512 visible ASCII characters, no spaces")
        for entry in self._load():
            if hmac.compare_digest(_digest(entry.salt, key), entry.digest):
                # One key, one tenant: never let a key open a second tenant.
                raise KeyFileError("this key is already registered; generate a new one")
        salt = secrets.token_bytes(16)
        entry = KeyEntry(
            tenant=tenant,
            key_id=key_id,
            salt=salt,
            digest=_digest(salt, key),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self._write([*self._load(), entry])
        return key, entry

    def revoke(self, tenant: str, key_id: str | None = None) -> int:
        """Remove the keys of `tenant` (only `key_id` if given); return how many."""
        tenant = validate_tenant_name(tenant)
        entries = self._load()
        kept = [e for e in entries if not (e.tenant == tenant and key_id in (None, e.key_id))]
        removed = len(entries) - len(kept)
        if removed:
            self._write(kept)
        return removed

    def _write(self, entries: list[KeyEntry]) -> None:
        """Replace the file atomically, readable by its owner only."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": FORMAT, "keys": [e.to_json() for e in entries]}
        handle, temp = tempfile.mkstemp(prefix=".api_keys.", dir=self.path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(payload, out, indent=2)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp, 0o600)
            os.replace(temp, self.path)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
        with self._lock:
            self._stamp = None


keys_app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Manage the read service's API keys."
)
_FILE_OPTION = typer.Option(None, "--file", help="Keys file (default TAGFLOW_KEYS_FILE).")


def _key_store(file: Path | None) -> KeyStore:
    return KeyStore(file if file is not None else Settings.from_env().keys_file)


@keys_app.command("add")
def add_command(
    tenant: str,
    key: str | None = typer.Option(None, help="Register this key instead of a new random one."),
    file: Path | None = _FILE_OPTION,
) -> None:
    """Create an API key for TENANT and print it once (only its hash is stored)."""
    try:
        new_key, entry = _key_store(file).add(tenant, key)
    except TagflowError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"key {entry.key_id} for tenant {entry.tenant}:", err=True)
    typer.echo(new_key)


@keys_app.command("revoke")
def revoke_command(
    tenant: str,
    key_id: str | None = typer.Option(None, "--key-id", help="Revoke only this key."),
    file: Path | None = _FILE_OPTION,
) -> None:
    """Revoke TENANT's keys (all, or one with --key-id)."""
    try:
        removed = _key_store(file).revoke(tenant, key_id)
    except TagflowError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"revoked {removed} key{'s' if removed != 1 else ''} of tenant {tenant}")


@keys_app.command("list")
def list_command(file: Path | None = _FILE_OPTION) -> None:
    """List key ids per tenant (never the keys)."""
    try:
        entries = _key_store(file).entries()
    except TagflowError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    for entry in entries:
        typer.echo(f"{entry.tenant}\t{entry.key_id}\t{entry.created_at}")


if __name__ == "__main__":
    keys_app()
