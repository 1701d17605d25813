"""The Dagster instance the CLI records runs in: $DAGSTER_HOME, default .tagflow/dagster."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

DEFAULT_DAGSTER_HOME = ".tagflow/dagster"


def dagster_instance() -> dg.DagsterInstance:
    """The persistent instance under $DAGSTER_HOME, created on first use.

    A fresh home gets the project's dagster.yaml (SQLite storage, source_db pool) when the
    command runs from the project root."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(DEFAULT_DAGSTER_HOME).resolve())))
    home.mkdir(parents=True, exist_ok=True)
    project_config = Path("dagster.yaml")
    if not (home / "dagster.yaml").exists() and project_config.is_file():
        shutil.copyfile(project_config, home / "dagster.yaml")
    return dg.DagsterInstance.get()
