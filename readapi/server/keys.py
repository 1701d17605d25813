"""Per-tenant API keys of the read service, kept hashed in a JSON file the operator manages.

Each entry maps one tenant to a salted SHA-256 of one key; a key opens exactly one tenant. A key
reads; one added with `--write` may also write span annotations (DESIGN §9), and its label (never
the key) is recorded as the writer. Entries of files from before writes (no "write", no "label")
load as read keys labelled by their key id.
API keys are 256-bit random tokens, so a fast salted hash is enough (slow password hashes
exist to protect guessable passwords) and keeps verification within the latency budget.
Comparisons use hmac.compare_digest, and every check hashes the key against every entry of
the file whichever tenant it names, so timing does not tell which tenants exist or how many
keys they have. The file is re-read when it changes: a revoked key stops working on the next
request, without restarting the service.

Every change (add, revoke) re-reads the file and replaces it atomically while holding an
exclusive lock on a sidecar file (`<keys file>.lock`), so concurrent `tagflow keys` commands
lose no key and never bring a revoked one back. A file that cannot be used (not JSON, not the
expected format, a malformed entry) is a KeyFileError naming what is wrong; the service answers
it with a 503 that tells the caller nothing (tagflow.readapi.server.app).

Manage keys with `tagflow keys add|revoke|list TENANT` or
`python -m tagflow.readapi.server.keys add|revoke|list TENANT` (the file is TAGFLOW_KEYS_FILE,
default .tagflow/api_keys.json).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
# How long a change waits for another `tagflow keys` command to finish with the file.
LOCK_TIMEOUT_S = 30.0
_ENTRY_FIELDS = ("tenant", "key_id", "salt", "sha256")
_MAX_LABEL_CHARS = 100


def _digest(salt: bytes, key: str) -> bytes:
    return hashlib.sha256(salt + key.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class KeyEntry:
    tenant: str
    key_id: str
    salt: bytes
    digest: bytes
    created_at: str
    # Whether the key may write span annotations; every key reads.
    write: bool = False
    # Who writes with this key, as annotations record it (`updated_by`, the history).
    label: str = ""

    @property
    def writer(self) -> str:
        """The label annotations record: the entry's, else one made of the key id."""
        return self.label or default_label(self.key_id)

    def to_json(self) -> dict[str, str | bool]:
        return {
            "tenant": self.tenant,
            "key_id": self.key_id,
            "salt": self.salt.hex(),
            "sha256": self.digest.hex(),
            "created_at": self.created_at,
            "write": self.write,
            "label": self.writer,
        }

    @classmethod
    def from_json(cls, data: object) -> KeyEntry:
        if not isinstance(data, dict) or not all(
            isinstance(data.get(name), str) for name in _ENTRY_FIELDS
        ):
            raise ValueError(f"an entry must be an object with the strings {list(_ENTRY_FIELDS)}")
        write, label = data.get("write", False), data.get("label", "")
        if not isinstance(write, bool):
            raise ValueError('"write" must be true or false')
        if not isinstance(label, str):
            raise ValueError('"label" must be a string')
        return cls(
            tenant=validate_tenant_name(data["tenant"]),
            key_id=str(data["key_id"]),
            salt=bytes.fromhex(data["salt"]),
            digest=bytes.fromhex(data["sha256"]),
            created_at=str(data.get("created_at", "")),
            write=write,
            label=checked_label(label) if label else "",
        )


def default_label(key_id: str) -> str:
    """The label of a key added without one: its id, which `tagflow keys list` shows."""
    return f"key-{key_id}"


def checked_label(label: str) -> str:
    """`label` if it can name a writer: 1-100 printable characters."""
    if not 0 < len(label) <= _MAX_LABEL_CHARS or not label.isprintable() or not label.strip():
        raise ValueError(f"a key's label must be 1-{_MAX_LABEL_CHARS} printable characters")
    return label


class KeyFileError(TagflowError):
    """The keys file cannot be read, written or used; the message says why, for the operator,
    without the file's path or any key material (the service never shows it to a caller)."""


def _reason(error: OSError) -> str:
    """What went wrong, without the path an OSError's text carries."""
    return os.strerror(error.errno or errno.EIO)


def _unusable(reason: str) -> KeyFileError:
    return KeyFileError(
        f"the API keys file (TAGFLOW_KEYS_FILE) is unusable: {reason}; fix it, or move it away "
        "and add the keys again with `tagflow keys add TENANT`"
    )


class KeyStore:
    """The keys file: verification for the service, add/revoke/list for the operator."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int, int] | None = None
        self._entries: list[KeyEntry] = []
        self._failure: str | None = None

    def __repr__(self) -> str:
        try:
            return f"KeyStore(entries={len(self._load())})"
        except KeyFileError:
            return "KeyStore(unusable)"

    # ------------------------------------------------------------------ reading

    def _load(self) -> list[KeyEntry]:
        """Entries of the file, re-read only when its inode, size, mtime or ctime changed; a
        file found unusable stays so (without being parsed again) until it changes, which
        includes a chmod that makes it readable."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        except OSError as error:
            raise _unusable(f"it cannot be read ({_reason(error)})") from None
        stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._entries, self._failure = self._read(), None
                except KeyFileError as error:
                    self._entries, self._failure = [], str(error)
                self._stamp = stamp
            if self._failure is not None:
                raise KeyFileError(self._failure)
            return self._entries

    def _read(self) -> list[KeyEntry]:
        """The entries in the file now (none without a file), or KeyFileError saying what is
        wrong with it."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as error:
            raise _unusable(f"it cannot be read ({_reason(error)})") from None
        except UnicodeDecodeError:
            raise _unusable("it is not UTF-8 text") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise _unusable(
                f"it is not JSON ({error.msg} at line {error.lineno}, column {error.colno})"
            ) from None
        except RecursionError:
            raise _unusable("it is not JSON (nested too deeply)") from None
        if not isinstance(data, dict):
            raise _unusable(f"it holds a JSON {type(data).__name__}, not an object")
        if data.get("format") != FORMAT:
            raise _unusable(f'its "format" is not "{FORMAT}"')
        if not isinstance(data.get("keys"), list):
            raise _unusable('its "keys" is not a list')
        entries = []
        for number, item in enumerate(data["keys"], start=1):
            try:
                entries.append(KeyEntry.from_json(item))
            except (ValueError, TagflowError) as error:
                raise _unusable(f"entry {number} is malformed ({error})") from None
        return entries

    def tenants(self) -> list[str]:
        return sorted({entry.tenant for entry in self._load()})

    def entries(self, tenant: str | None = None) -> list[KeyEntry]:
        return [e for e in self._load() if tenant is None or e.tenant == tenant]

    def verify(self, key: object, tenant: str | None = None) -> str:
        """The tenant that `key` opens (and it must be `tenant` when one is named); otherwise
        AuthenticationFailed with one message for every reason. An unusable keys file is a
        KeyFileError whatever the key, even none."""
        return self.identify(key, tenant).tenant

    def identify(self, key: object, tenant: str | None = None) -> KeyEntry:
        """The entry of `key` (its tenant, whether it may write, its label), under verify's
        rules."""
        entries = self._load()
        failure = AuthenticationFailed("missing or invalid API key")
        if not isinstance(key, str) or not key or len(key) > _MAX_KEY_LENGTH:
            raise failure
        matched: KeyEntry | None = None
        # Every entry is hashed and compared, with no early exit and whatever `tenant` is:
        # the work is the same for a wrong key, another tenant's key and an unknown tenant.
        for entry in entries:
            if hmac.compare_digest(_digest(entry.salt, key), entry.digest):
                matched = entry
        if matched is None or (tenant is not None and matched.tenant != tenant):
            raise failure
        return matched

    # ------------------------------------------------------------------ managing

    def add(
        self, tenant: str, key: str | None = None, *, write: bool = False, label: str | None = None
    ) -> tuple[str, KeyEntry]:
        """Store a key for `tenant` (a new random one unless `key` is given, e.g. to import
        an existing key) and return (key, entry). The key itself is not stored. `write` lets
        it write span annotations too; `label` names its writer (default: from its id)."""
        tenant = validate_tenant_name(tenant)
        if label is not None:
            try:
                label = checked_label(label)
            except ValueError as error:
                raise KeyFileError(str(error)) from None
        # A key travels in an Authorization header: anything but visible ASCII is refused by
        # HTTP clients or arrives changed, so such a key would be printed once and never work.
        if key is not None and (
            not 0 < len(key) <= _MAX_KEY_LENGTH or not all("!" <= c <= "~" for c in key)
        ):
            raise KeyFileError("an API key must be 1-512 visible ASCII characters, no spaces")
        with self._exclusive():
            entries = self._read()
            key_id = secrets.token_hex(4)
            while any(entry.key_id == key_id for entry in entries):
                key_id = secrets.token_hex(4)
            if key is None:
                key = f"{_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            for entry in entries:
                if hmac.compare_digest(_digest(entry.salt, key), entry.digest):
                    # One key, one tenant: never let a key open a second tenant.
                    raise KeyFileError("this key is already registered; generate a new one")
            salt = secrets.token_bytes(16)
            added = KeyEntry(
                tenant=tenant,
                key_id=key_id,
                salt=salt,
                digest=_digest(salt, key),
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                write=write,
                label=label or default_label(key_id),
            )
            self._write([*entries, added])
        return key, added

    def revoke(self, tenant: str, key_id: str | None = None) -> int:
        """Remove the keys of `tenant` (only `key_id` if given); return how many."""
        tenant = validate_tenant_name(tenant)
        with self._exclusive():
            entries = self._read()
            kept = [e for e in entries if not (e.tenant == tenant and key_id in (None, e.key_id))]
            if len(kept) < len(entries):
                self._write(kept)
        return len(entries) - len(kept)

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the exclusive lock of the keys file for a read-modify-write. The lock is on a
        sidecar file: the keys file itself is replaced by each write, so a lock on it would
        be on an inode the next writer no longer opens."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise KeyFileError(
                f"the keys file's lock cannot be opened ({_reason(error)})"
            ) from None
        try:
            deadline = time.monotonic() + LOCK_TIMEOUT_S
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise KeyFileError(
                            f"another `tagflow keys` command has held the keys file for over "
                            f"{LOCK_TIMEOUT_S:g} s; try again when it has finished"
                        ) from None
                    time.sleep(0.005)
            yield
        finally:
            os.close(descriptor)  # releases the lock

    def _write(self, entries: list[KeyEntry]) -> None:
        """Replace the file atomically (a reader sees the old file or the new one, never a
        part), readable by its owner only; called under the lock."""
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
        # The rename itself survives a crash only once the folder is on disk too.
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
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
    write: bool = typer.Option(
        False, "--write", help="The key may also write span annotations (default: read only)."
    ),
    label: str | None = typer.Option(
        None, help="Who writes with this key, as annotations record it (default: key-<id>)."
    ),
    file: Path | None = _FILE_OPTION,
) -> None:
    """Create an API key for TENANT and print it once (only its hash is stored)."""
    try:
        new_key, entry = _key_store(file).add(tenant, key, write=write, label=label)
    except TagflowError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    access = "read and write" if entry.write else "read"
    typer.echo(
        f"key {entry.key_id} ({access}, label {entry.writer!r}) for tenant {entry.tenant}:",
        err=True,
    )
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
    """List key ids per tenant, with their access and label (never the keys)."""
    try:
        entries = _key_store(file).entries()
    except TagflowError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    for entry in entries:
        access = "read,write" if entry.write else "read"
        typer.echo(f"{entry.tenant}\t{entry.key_id}\t{entry.created_at}\t{access}\t{entry.writer}")


if __name__ == "__main__":
    keys_app()
