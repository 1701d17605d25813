"""`tagflow demo`: the embedded PostgreSQL, two synthetic plants, a Dagster materialisation of
every asset and check, then what the demo shows of the files written. The server stops when the
demo ends unless it is asked to keep it; commands that need it later start it again."""

from __future__ import annotations

import os
import sys
from datetime import date, timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from tagflow.cli.runs import materialize_days
from tagflow.demo.showcase import show_read, written_summary
from tagflow.demo.synthetic_plant import generate_plant
from tagflow.errors import TagflowError
from tagflow.io_managers import DatasetStore
from tagflow.pipelines.instance import dagster_instance
from tagflow.settings import EMBEDDED_SOURCE, Settings
from tagflow.source.embedded import (
    DEFAULT_DATA_DIR,
    embedded_server_running,
    embedded_server_url,
    stop_embedded_server,
)

DEMO_TENANTS = ("acme", "globex")


def run_demo(
    console: Console,
    settings: Settings,
    *,
    tags: int,
    days: int,
    progress: Progress,
    keep_server: bool = False,
) -> None:
    """The demo's plants in its embedded server, materialised into the settings' store; the
    server is stopped at the end (also when the demo fails) unless `keep_server`."""
    console.print(f"starting the embedded PostgreSQL ({DEFAULT_DATA_DIR})")
    settings = settings.replace(source_url=EMBEDDED_SOURCE)
    try:
        url = embedded_server_url(DEFAULT_DATA_DIR)
        _materialise(console, settings, url, tags, days, progress)
    finally:
        _leave_server(console, keep_server)


def _materialise(
    console: Console, settings: Settings, url: str, tags: int, days: int, progress: Progress
) -> None:
    plant = generate_plant(url, DEMO_TENANTS, tags=tags, days=days, seed=7)
    for summary in plant.tenants:
        console.print(
            f"tenant {summary.tenant}: {summary.tags} tags, {summary.numeric_rows} numeric and "
            f"{summary.string_rows} string rows"
        )
    first, stop = plant.start.date(), plant.end.date()
    # The demo's code location spans just the demo's days (ui_command).
    settings = settings.replace(start_date=first, end_date=stop)
    store = DatasetStore(settings.store)
    instance = dagster_instance(settings)
    failed = 0
    with progress:
        task = progress.add_task("materialise", total=len(DEMO_TENANTS) * days)
        for tenant in DEMO_TENANTS:
            runs = materialize_days(
                tenant, first, stop, instance, settings,
                on_partition_done=lambda run: progress.advance(task),
            )  # fmt: skip
            failed += sum(not run.success for run in runs)
    if failed:
        raise TagflowError(f"{failed} tenant-day runs failed; see the Dagster UI for details")
    console.print(written_summary(store, DEMO_TENANTS))
    show_read(console, store, plant.start + timedelta(hours=6))
    home = Path(instance.root_directory)
    console.print(
        f"{len(DEMO_TENANTS) * days} Dagster runs recorded in {home}. Open the UI with: "
        + ui_command(home, first, stop)
    )


def ui_command(home: Path, first_day: date, end_day: date) -> str:
    """The command that opens the Dagster UI on the demo's runs: its partitions are the demo's
    days, [first_day, end_day) (else the UI counts every day from 2020 to yesterday as missing),
    and `dagster` is this environment's, which the shell may not have on its PATH."""
    dagster = Path(sys.executable).parent / "dagster"
    here = Path.cwd()
    shown = {
        "DAGSTER_HOME": _relative(home, here, "$PWD/"),
        "TAGFLOW_SOURCE_URL": EMBEDDED_SOURCE,
        Settings.variable("start_date"): first_day.isoformat(),
        Settings.variable("end_date"): end_day.isoformat(),
    }
    variables = " ".join(f"{name}={value}" for name, value in shown.items())
    return f"{variables} {_relative(dagster, here, '')} dev -w workspace.yaml"


def _relative(path: Path, here: Path, prefix: str) -> str:
    """`path` as `prefix` + its path under `here` when it is there, else as it is."""
    absolute = Path(os.path.abspath(path))
    return f"{prefix}{absolute.relative_to(here)}" if absolute.is_relative_to(here) else str(path)


def _leave_server(console: Console, keep_server: bool) -> None:
    """Stop the server or say that it runs on, so the demo never leaves a postmaster unnoticed."""
    if keep_server:
        if not embedded_server_running(DEFAULT_DATA_DIR):
            return  # it never started: the error says why
        console.print(
            f"the embedded PostgreSQL keeps running ({DEFAULT_DATA_DIR}, --keep-server); "
            "stop it with: python -m tagflow.source.embedded stop"
        )
    elif stop_embedded_server(DEFAULT_DATA_DIR):
        console.print(
            f"stopped the embedded PostgreSQL ({DEFAULT_DATA_DIR}); `tagflow serve`, "
            "`tagflow materialize` and TAGFLOW_SOURCE_URL=embedded start it again when needed"
        )
