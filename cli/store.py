"""`tagflow store sweep`: remove the temp files that killed runs left in the dataset store, now,
as every run does for its own tenant before it writes (tagflow.io_managers.sweeper)."""

from __future__ import annotations

import typer

from tagflow.errors import TagflowError
from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.io_managers.sweeper import sweep_stale_temp_files
from tagflow.settings import Settings

store_app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@store_app.command()
def sweep(
    store: str | None = typer.Option(
        None, help="Dataset root, a path or URL (default: TAGFLOW_STORE, else .tagflow/store)."
    ),
    tenant: str | None = typer.Option(None, help="Only this tenant's folders (default: all)."),
    max_age_s: int | None = typer.Option(
        None,
        min=1,
        help="Remove temp files unwritten for longer than this many seconds (default: "
        "TAGFLOW_TEMP_MAX_AGE_S, else 21600 = 6 h). Keep it above the longest run: a "
        "younger file may belong to a run still writing.",
    ),
) -> None:
    """Remove stale temp files (`.part-0.parquet.<id>.tmp`) of killed runs; print the counts.

    Only files named exactly as tagflow stages them, and last written more than MAX_AGE_S
    seconds ago, are removed; symbolic links are never followed. An object-store root stages in
    this machine's temp folder: that folder is swept instead."""
    try:
        settings = Settings.from_env().replace(store=store, temp_max_age_s=max_age_s)
        report = sweep_stale_temp_files(
            DatasetStore(settings.store), settings.temp_max_age_s, tenant
        )
    except TagflowError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    except OSError as error:
        # The reason only: the store's path is the operator's, not for a shared terminal log.
        typer.echo(f"error: the store could not be swept ({error.strerror})", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(str(report))
    if report.failed:
        raise typer.Exit(code=1)
