"""The `tagflow` command's entry point: a base install (the read client only) has the command
but not what it runs, so it says which extra to install instead of a traceback."""

from __future__ import annotations

import importlib
import sys

# What the commands that run import (lazily, for a quick --help): Dagster, the definitions,
# the read API's server.
_COMMAND_MODULES = {
    "materialize": "tagflow.cli.runs",
    "backfill": "tagflow.cli.runs",
    "compact": "tagflow.cli.runs",
    "demo": "tagflow.cli.demo",
    "serve": "tagflow.readapi.server.app",
}
# The modules the command needs that only the `pipeline` extra installs.
_PIPELINE_MODULES = {"dagster", "typer", "rich", "pandera", "polars", "duckdb", "fastapi"}


def main() -> None:
    from tagflow.collector import long_lived

    try:
        # A command's modules live as long as its process: imported with the collector paused,
        # then left out of its passes (tagflow/collector.py). Here, not in the commands, so a
        # process that runs commands in-process (tests, CliRunner) keeps its collector whole.
        with long_lived():
            from tagflow.cli.app import app

            if len(sys.argv) > 1 and sys.argv[1] in _COMMAND_MODULES:
                importlib.import_module(_COMMAND_MODULES[sys.argv[1]])
    except ModuleNotFoundError as missing:
        if (missing.name or "").split(".")[0] not in _PIPELINE_MODULES:
            raise
        print(
            "the tagflow command needs the pipeline extra: pip install 'tagflow[pipeline]'",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    app()
