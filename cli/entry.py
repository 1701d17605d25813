"""The `tagflow` command's entry point: a base install (the read client only) has the command
but not what it runs, so it says which extra to install instead of a traceback."""

from __future__ import annotations

import sys

# The modules the command needs that only the `pipeline` extra installs.
_PIPELINE_MODULES = {"dagster", "typer", "rich", "pandera", "polars", "duckdb", "fastapi"}


def main() -> None:
    try:
        from tagflow.cli.app import app
    except ModuleNotFoundError as missing:
        if (missing.name or "").split(".")[0] not in _PIPELINE_MODULES:
            raise
        print(
            "the tagflow command needs the pipeline extra: pip install 'tagflow[pipeline]'",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    app()
