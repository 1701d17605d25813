"""`tagflow derived check FILE` and `tagflow derived list --tenant T` (DESIGN §7, §8): the
derived tags file checked the way the code location loads it, and one tenant's definitions."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tagflow.errors import InvalidArgument, InvalidDerivedTag, TagflowError
from tagflow.settings import Settings
from tagflow.transforms.derived.definitions import (
    TenantDerivedTags,
    read_definitions_file,
    tenant_definitions,
    tenant_sections,
)
from tagflow.transforms.derived.expression import excerpt

derived_app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

FILE_TO_CHECK = typer.Argument(..., help="The derived tags file (YAML) to check.")
DEFINITIONS_FILE = typer.Option(None, help="The derived tags file (default: TAGFLOW_DERIVED_TAGS).")


def _error(message: object) -> None:
    # Plain echo, not rich: messages quote user text, which rich would read as markup.
    typer.echo(f"error: {message}", err=True)


@derived_app.command()
def check(
    file: Path = FILE_TO_CHECK,
    source_url: str | None = typer.Option(
        None,
        help="Also check tag names against each tenant's source tags in this database "
        "(default: TAGFLOW_SOURCE_URL; without either, names are not checked).",
    ),
) -> None:
    """Check a derived tags file as the code location loads it; exit 2 on any error.

    Checks the YAML shape, names, syntax, duplicates and cycles, and with a source also unknown
    tags and clashes with source tags. Prints each tenant's result."""
    try:
        sections = tenant_sections(read_definitions_file(file))
        settings = Settings.from_env().replace(source_url=source_url)
    except TagflowError as error:
        _error(error)
        raise typer.Exit(code=2) from None
    if not sections:
        typer.echo("no derived tags defined")
        return
    failed = False
    connection = None
    try:
        if settings.source_url is not None:
            from tagflow.source.connection import connect
            from tagflow.source.embedded import resolve_source_url

            connection = connect(resolve_source_url(settings.source_url))
        for tenant, entries in sections.items():
            try:
                definitions = tenant_definitions(tenant, entries)
                if connection is not None:
                    from tagflow.source.extract import read_tags

                    names = read_tags(connection, definitions.tenant).column("tag_name")
                    definitions.check_source_tags(names.to_pylist())
            except (InvalidDerivedTag, InvalidArgument) as error:
                _error(error)
                failed = True
                continue
            except TagflowError as error:  # an unknown tenant, a source that went away
                _error(f"tenant {excerpt(str(tenant))}: {error}")
                failed = True
                continue
            checked = (
                "names checked against the source"
                if connection is not None
                else "names not checked: no source URL"
            )
            typer.echo(f"tenant {definitions.tenant}: {_count(definitions)} OK ({checked})")
    except TagflowError as error:
        _error(error)
        raise typer.Exit(code=2) from None
    finally:
        if connection is not None:
            connection.close()
    if failed:
        raise typer.Exit(code=2)


def _count(definitions: TenantDerivedTags) -> str:
    return f"{len(definitions)} derived tag{'' if len(definitions) == 1 else 's'}"


@derived_app.command("list")
def list_definitions(
    tenant: str = typer.Option(..., help="Tenant whose derived tags to show."),
    file: Path | None = DEFINITIONS_FILE,
    as_json: bool = typer.Option(False, "--json", help="Print JSON, for scripts."),
) -> None:
    """Show a tenant's derived tags in dependency order, with ids, expressions and inputs."""
    try:
        settings = Settings.from_env().replace(derived_tags=None if file is None else str(file))
        if settings.derived_tags is None:
            raise InvalidArgument("no derived tags file: set TAGFLOW_DERIVED_TAGS or pass --file")
        sections = tenant_sections(read_definitions_file(settings.derived_tags))
        definitions = tenant_definitions(tenant, sections.get(tenant))
    except TagflowError as error:
        _error(error)
        raise typer.Exit(code=2) from None
    if as_json:
        rows = [
            {
                "name": tag.name,
                "tag_id": tag.tag_id,
                "expression": tag.expression_text,
                "inputs": list(tag.inputs),
                "description": tag.description,
                "fingerprint": tag.fingerprint,
            }
            for tag in definitions
        ]
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not len(definitions):
        typer.echo(f"tenant {definitions.tenant} has no derived tags")
        return
    for tag in definitions:
        typer.echo(f"{tag.name}  (id {tag.tag_id})")
        typer.echo(f"  expression:  {tag.expression_text}")
        typer.echo(f"  inputs:      {', '.join(tag.inputs)}")
        if tag.description:
            typer.echo(f"  description: {tag.description}")
