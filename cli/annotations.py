"""`tagflow annotations export --tenant T` (DESIGN §9): a tenant's span annotations and their
history written now as the `span_annotations` and `span_annotation_history` datasets, by the
same code as the Dagster asset the annotations sensor runs (no Dagster run is recorded)."""

from __future__ import annotations

import typer

from tagflow.annotations.export import HISTORY, RECORDS, export_annotations
from tagflow.assets.resources import source_database, state_database
from tagflow.errors import TagflowError
from tagflow.io_managers.dataset_store import DatasetStore
from tagflow.pipelines.definitions import NO_SOURCE
from tagflow.settings import EMBEDDED_SOURCE, Settings

annotations_app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@annotations_app.command()
def export(
    tenant: str = typer.Option(..., help="Tenant (schema) whose annotations to export."),
    source_url: str | None = typer.Option(
        None, help="Source database URL, to check the tenant (default: TAGFLOW_SOURCE_URL)."
    ),
    store: str | None = typer.Option(
        None, help="Dataset root, a path or URL (default: TAGFLOW_STORE, else .tagflow/store)."
    ),
) -> None:
    """Write TENANT's span_annotations and span_annotation_history now; print their rows.

    The state database is TAGFLOW_STATE_URL (the demo's embedded one when the source is the
    demo's). Each file is replaced whole: a reader sees the previous export or this one."""
    from tagflow.source.embedded import demo_server_exists

    try:
        settings = Settings.from_env().replace(source_url=source_url, store=store)
        if settings.source_url is None and demo_server_exists():
            settings = settings.replace(source_url=EMBEDDED_SOURCE)
        if settings.source_url is None:
            raise TagflowError(NO_SOURCE)
        source_database(settings).reader().require_tenant(tenant)
        annotations = state_database(settings).store()
        exported = export_annotations(annotations, DatasetStore(settings.store), tenant)
    except TagflowError as error:
        # Plain echo, not rich: messages quote user text, which rich would read as markup.
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(
        f"{tenant}: {exported.records.rows} annotated spans ({RECORDS}), "
        f"{exported.history.rows} changes ({HISTORY}), up to high-water mark "
        f"{exported.high_water_mark}"
    )
