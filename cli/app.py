"""The `tagflow` command line: demo, materialize, backfill, serve, keys, tenants, derived tags,
span annotations and the store's upkeep."""

from __future__ import annotations

import logging
import shlex
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tagflow.errors import InvalidTimeRange, TagflowError
from tagflow.settings import EMBEDDED_SOURCE, Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(stderr=True)


def _parse_day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidTimeRange(
            f"{option} must be a date like 2026-03-01, got {value[:40]!r}"
        ) from None


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def _fail(error: TagflowError, what: str = "") -> NoReturn:
    text = f"{what}{': ' if what else ''}{error}"
    console.print(f"[red]error:[/red] {escape(text)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


@contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    """Without --verbose the terminal shows tagflow's own lines only while the command runs: no
    library warnings, no connection retries (Dagster's event log keeps every event and trace)."""
    if verbose:
        yield
        return
    logger = logging.getLogger("tagflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _settings(**options: str | None) -> Settings:
    """The environment's settings with this command's options; with no source URL anywhere,
    the demo's embedded server if the demo created one here (DESIGN §7)."""
    from tagflow.source.embedded import demo_server_exists

    settings = Settings.from_env().replace(**options)
    if settings.source_url is None and demo_server_exists():
        settings = settings.replace(source_url=EMBEDDED_SOURCE)
    return settings


SOURCE_URL = typer.Option(
    None,
    help="Source database URL (default: TAGFLOW_SOURCE_URL, else the demo's embedded server).",
)
STORE = typer.Option(
    None, help="Dataset root, a path or URL (default: TAGFLOW_STORE, else .tagflow/store)."
)
VERBOSE = typer.Option(
    False, "--verbose", help="Show Dagster's events and the stack trace of a failure."
)
# Ctrl-C's exit status, as a shell reports a command that SIGINT ended.
INTERRUPTED_EXIT = 130


@app.command()
def materialize(
    tenant: str = typer.Option(..., help="Tenant (schema) to materialise."),
    start: str = typer.Option(..., help="First day, YYYY-MM-DD."),
    end: str = typer.Option(..., help="Day after the last, YYYY-MM-DD (exclusive)."),
    source_url: str | None = SOURCE_URL,
    store: str | None = STORE,
    verbose: bool = VERBOSE,
) -> None:
    """Run every tagflow asset for TENANT on each day of [START, END) through Dagster, one run
    per day."""
    _in_process(tenant, start, end, source_url, store, 1, verbose, ["tagflow", "materialize"])


@app.command()
def compact(
    tenant: str = typer.Option(..., help="Tenant (schema) whose months to copy."),
    start: str = typer.Option(..., help="First month, YYYY-MM."),
    end: str = typer.Option(..., help="Month after the last, YYYY-MM (exclusive)."),
    source_url: str | None = SOURCE_URL,
    store: str | None = STORE,
) -> None:
    """Copy each month of [START, END) of TENANT into one file per dataset clustered by tag,
    for fast reads (the month copies' schedule does this for closed months by itself). The
    copy reads the store only; the source URL names the deployment, as for every run."""
    from tagflow.cli.runs import copy_months, next_month
    from tagflow.pipelines.instance import dagster_instance

    try:
        settings = _settings(source_url=source_url, store=store)
        first, stop = _parse_month(start, "--start"), _parse_month(end, "--end")
        if stop <= first:
            raise InvalidTimeRange(f"--end {end} must be after --start {start} (end is exclusive)")
        months = []
        while first < stop:
            months.append(first)
            first = next_month(first)
        runs = copy_months(tenant, months, dagster_instance(settings), settings)
    except TagflowError as error:
        _fail(error)
    except KeyboardInterrupt:  # between two runs
        console.print("compact interrupted by Ctrl-C")
        raise typer.Exit(code=INTERRUPTED_EXIT) from None
    for run in runs:
        if run.success:
            outcome = "ok"
        elif run.interrupted:
            outcome = "interrupted by Ctrl-C; each file is old or new, never partial"
        else:
            outcome = f"FAILED, {run.failure.line() if run.failure else 'failed'}"
        line = f"{run.tenant} {run.day:%Y-%m}: {outcome} (run {run.run_id[:8]})"
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if any(run.interrupted for run in runs):
        raise typer.Exit(code=INTERRUPTED_EXIT)
    if not all(run.success for run in runs):
        raise typer.Exit(code=1)


def _parse_month(value: str, option: str) -> date:
    try:
        return date.fromisoformat(f"{value}-01")
    except (TypeError, ValueError):
        raise InvalidTimeRange(
            f"{option} must be a month like 2026-03, got {value[:40]!r}"
        ) from None


@app.command()
def backfill(
    tenant: str = typer.Option(..., help="Tenant (schema) to backfill."),
    start: str = typer.Option(..., help="First day, YYYY-MM-DD."),
    end: str = typer.Option(..., help="Day after the last, YYYY-MM-DD (exclusive)."),
    in_process: bool = typer.Option(
        False, "--in-process", help="Run here instead of through the instance's daemon."
    ),
    days_per_run: int = typer.Option(
        31, min=1, help="With --in-process: days per run (the daemon uses the assets' policy)."
    ),
    wait: bool = typer.Option(True, help="Wait for a submitted backfill, showing progress."),
    source_url: str | None = SOURCE_URL,
    store: str | None = STORE,
    verbose: bool = VERBOSE,
) -> None:
    """Backfill every asset for TENANT over [START, END) in range runs (each day its own files).

    By default the backfill is submitted to the Dagster instance ($DAGSTER_HOME), whose daemon
    (`dagster dev` or `dagster-daemon run`) launches its runs: it shows in the UI, and the
    month copies' schedule copies its closed months at its next tick. The daemon's code
    location reads its own TAGFLOW_SOURCE_URL and TAGFLOW_STORE. With --in-process, the closed
    months of the range are copied here once all their days succeeded; a failure prints the
    commands that run the failed days again, and Ctrl-C stops the whole command (exit 130)."""
    if in_process:
        command = ["tagflow", "backfill", "--in-process"]
        if days_per_run != 31:
            command += ["--days-per-run", str(days_per_run)]
        _in_process(tenant, start, end, source_url, store, days_per_run, verbose, command, True)
        return
    with _quiet(verbose):
        _submit_and_wait(tenant, start, end, wait, source_url, store)


def _submit_and_wait(
    tenant: str, start: str, end: str, wait: bool, source_url: str | None, store: str | None
) -> None:
    from tagflow.cli.backfills import backfill_daemon_running, submit_backfill
    from tagflow.pipelines.instance import dagster_instance

    try:
        settings = _settings(source_url=source_url, store=store)
        first, stop = _parse_day(start, "--start"), _parse_day(end, "--end")
        instance = dagster_instance(settings)
        backfill_id = submit_backfill(tenant, first, stop, instance, settings)
    except TagflowError as error:
        _fail(error)
    console.print(f"backfill {backfill_id} submitted (Dagster UI: Runs → Backfills)")
    if not backfill_daemon_running(instance):
        console.print(
            "[yellow]no backfill daemon is running on this instance: start "
            "`dagster dev -w workspace.yaml` or `dagster-daemon run`, or use --in-process[/yellow]"
        )
    if wait:
        _follow(backfill_id, instance, settings)
    else:
        console.print(f"see where it stands with: tagflow backfill-status {backfill_id}")


def _follow(backfill_id: str, instance, settings: Settings) -> None:
    """Wait for a submitted backfill with a progress bar, then summarise it as an in-process
    backfill is summarised. Ctrl-C stops waiting only: the daemon goes on with the backfill."""
    from tagflow.cli.backfills import backfill_state

    try:
        with _run_progress() as progress:
            state = backfill_state(instance, backfill_id, settings)
            task = progress.add_task("backfill", total=state.days_total, failed="")
            while not state.finished:
                time.sleep(2)
                state = backfill_state(instance, backfill_id, settings)
                failed = f", [red]{state.days_failed} failed[/red]" if state.days_failed else ""
                progress.update(task, completed=state.days_done, failed=failed)
    except KeyboardInterrupt:
        console.print(
            f"stopped waiting; backfill {backfill_id} goes on in the daemon: "
            f"`tagflow backfill-status {backfill_id}` shows where it stands, and the Dagster "
            "UI (Runs → Backfills) cancels it",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=INTERRUPTED_EXIT) from None
    _report_backfill(backfill_id, instance, settings)


def _report_backfill(backfill_id: str, instance, settings: Settings) -> None:
    """One line per stretch of days by outcome, the counts and the commands that rerun what did
    not succeed. Exit 0 when every day succeeded, 1 when a day or a month copy failed (or days
    are still running, for `backfill-status`)."""
    from tagflow.cli.backfills import backfill_report
    from tagflow.cli.summary import RangeSummary

    report = backfill_report(instance, backfill_id, settings)
    state = report.state
    lines = [f"backfill {backfill_id}: {state.status}, {state.runs} run(s)"]
    if report.days:
        summary = RangeSummary(report.tenant, report.days, report.runs)
        lines += summary.lines(
            ["tagflow", "backfill"],
            not_started="not launched by the backfill",
            running=not state.finished,
        )
    for what, run in report.other_runs:
        if not run.success:
            reason = run.failure.line() if run.failure else "failed"
            lines.append(f"{report.tenant} {what}: FAILED, {reason} (run {run.run_id[:8]})")
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if not state.succeeded:
        raise typer.Exit(code=1)


@app.command("backfill-status")
def backfill_status(
    backfill_id: str | None = typer.Argument(
        None, help="The backfill's id (default: the last one submitted to this instance)."
    ),
) -> None:
    """Where a backfill submitted to the daemon stands: each stretch of days done, failed (with
    why, in one line) or still running, and once it ended the commands that rerun what failed."""
    from tagflow.cli.backfills import latest_backfill_id
    from tagflow.pipelines.definitions import build_definitions
    from tagflow.pipelines.instance import dagster_instance

    try:
        settings = _settings()
        instance = dagster_instance(settings)
        backfill_id = backfill_id or latest_backfill_id(instance)
        if backfill_id is None or instance.get_backfill(backfill_id) is None:
            which = f"backfill {backfill_id}" if backfill_id else "backfill"
            raise TagflowError(f"no {which} on this instance ($DAGSTER_HOME)")
        # the asset graph the backfill's days are read against needs the code location
        build_definitions(settings)
    except TagflowError as error:
        _fail(error)
    _report_backfill(backfill_id, instance, settings)


def _in_process(
    tenant: str,
    start: str,
    end: str,
    source_url: str | None,
    store: str | None,
    days_per_run: int,
    verbose: bool,
    command: list[str],
    copy: bool = False,
) -> None:
    """`materialize` and `backfill --in-process`: the runs with a progress bar, then one line
    per stretch of days, the counts and the commands that rerun what failed; with `copy`, the
    closed months all of whose days succeeded are copied for the read API.
    Exit 0 when every day succeeded, 1 after a failed run, 2 before any run, 130 on Ctrl-C."""
    with _quiet(verbose):
        from tagflow.cli.runs import Interrupted, closed_months, days_in_range, materialize_days
        from tagflow.cli.summary import RangeSummary
        from tagflow.pipelines.instance import dagster_instance

        if store is not None:
            command = [*command, "--store", store]
        what = f"{tenant} {start}..{end} (end exclusive)"
        interrupted = False
        try:
            settings = _settings(source_url=source_url, store=store)
            first, stop = _parse_day(start, "--start"), _parse_day(end, "--end")
            days = days_in_range(first, stop, settings.start_date, settings.end_date)
            instance = dagster_instance(settings)
            with _run_progress() as progress:
                task = progress.add_task(f"materialise {tenant}", total=len(days), failed="")
                runs = materialize_days(
                    tenant,
                    first,
                    stop,
                    instance,
                    settings,
                    on_partition_done=lambda run: _count(progress, task, run),
                    days_per_run=days_per_run,
                    verbose=verbose,
                )
        except Interrupted as stopped:
            runs, interrupted = stopped.runs, True
        except KeyboardInterrupt:
            console.print(f"{what}: interrupted by Ctrl-C before any run started", soft_wrap=True)
            raise typer.Exit(code=INTERRUPTED_EXIT) from None
        except TagflowError as error:
            if verbose:
                console.print_exception()
            _fail(error, "" if isinstance(error, InvalidTimeRange) else what)
        summary = RangeSummary(tenant, days, runs)
        if verbose:
            for run in runs:
                if run.failure is not None and run.failure.trace:
                    console.print(run.failure.trace, highlight=False, markup=False, soft_wrap=True)
        for line in summary.lines(command, interrupted):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        if interrupted:
            raise typer.Exit(code=INTERRUPTED_EXIT)
        copied = True
        if copy:
            # Months whose days all succeeded are copied even when other months failed.
            unfinished = {day.replace(day=1) for day in summary.failed + summary.not_started}
            months = closed_months(summary.done, datetime.now(UTC).date())
            months = [month for month in months if month not in unfinished]
            copied = _copy_months(tenant, months, instance, settings, verbose, store)
        if summary.failed or summary.not_started or not copied:
            raise typer.Exit(code=1)


def _copy_months(
    tenant: str,
    months: list[date],
    instance,
    settings: Settings,
    verbose: bool,
    store: str | None,
) -> bool:
    """Copy `months` of `tenant` for the read API; whether every copy succeeded. `store` is
    the --store given, repeated in the command that makes a copy Ctrl-C stopped."""
    from tagflow.cli.runs import PartitionRun, copy_months, next_month

    if not months:
        return True
    runs: list[PartitionRun] = []
    with _progress() as progress:
        task = progress.add_task(f"copy months of {tenant}", total=len(months))

        def ended(run: PartitionRun) -> None:
            runs.append(run)
            progress.advance(task)

        try:
            copy_months(tenant, months, instance, settings, verbose, on_run=ended)
            interrupted = any(run.interrupted for run in runs)
        except KeyboardInterrupt:  # between two runs
            interrupted = True
    # The run Ctrl-C stopped, if any, is the last: no run starts after it.
    copied = [run for run in runs if not run.interrupted]
    for run in copied:
        if not run.success:
            reason = run.failure.line() if run.failure else "failed"
            line = f"{tenant} {run.day:%Y-%m} month copy: FAILED, {reason}"
            console.print(line, highlight=False, markup=False, soft_wrap=True)
    if interrupted and len(copied) < len(months):
        first, end = f"{months[len(copied)]:%Y-%m}", f"{next_month(months[-1]):%Y-%m}"
        again = ["tagflow", "compact", "--tenant", tenant, "--start", first, "--end", end]
        again += ["--store", store] if store else []
        console.print(
            f"{tenant} month copies from {first}: interrupted by Ctrl-C; their days are done "
            f"(reads use their own files until they are made); to make them: {shlex.join(again)}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    if interrupted:
        raise typer.Exit(code=INTERRUPTED_EXIT)
    return all(run.success for run in runs)


def _run_progress() -> Progress:
    """Days done of the range, and how many failed: a failed day never counts as done."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days done{task.fields[failed]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def _count(progress: Progress, task, run) -> None:
    if run.success:
        progress.advance(task, len(run.days))
        return
    failed = progress.tasks[task].fields.get("failed_days", 0) + len(run.days)
    progress.update(task, failed=f", [red]{failed} failed[/red]", failed_days=failed)


# The synthetic plant's MIN_TAGS (one tag of every kind, including the two the demo shows),
# written out so `tagflow --help` need not import the generator; tests/cli checks they agree.
DEMO_MIN_TAGS = 13


@app.command()
def demo(
    tags: int = typer.Option(200, min=DEMO_MIN_TAGS, help="Tags per tenant."),
    days: int = typer.Option(3, min=1, help="Days of history."),
    keep_server: bool = typer.Option(
        False,
        "--keep-server",
        help="Leave the embedded PostgreSQL running afterwards (default: stop it).",
    ),
) -> None:
    """Start an embedded PostgreSQL, generate two synthetic plants, materialise, show a read,
    and stop the server again (unless --keep-server)."""
    from tagflow.cli.demo import run_demo
    from tagflow.cli.runs import Interrupted

    try:
        run_demo(
            console,
            Settings.from_env(),
            tags=tags,
            days=days,
            progress=_progress(),
            keep_server=keep_server,
        )
    except (Interrupted, KeyboardInterrupt):
        console.print("demo interrupted by Ctrl-C; `tagflow demo` starts it over")
        raise typer.Exit(code=INTERRUPTED_EXIT) from None
    except TagflowError as error:
        _fail(error)


@app.command()
def tenants(source_url: str | None = SOURCE_URL, store: str | None = STORE) -> None:
    """List the source's tenants, each with the last day materialised in the store (the
    tenant names `--tenant` takes)."""
    from tagflow.assets.resources import source_database
    from tagflow.cli.tenants import last_materialised_days
    from tagflow.io_managers.dataset_store import DatasetStore
    from tagflow.pipelines.definitions import NO_SOURCE

    try:
        settings = _settings(source_url=source_url, store=store)
        if settings.source_url is None:
            raise TagflowError(NO_SOURCE)
        names = source_database(settings).reader().list_tenants()
        last = last_materialised_days(DatasetStore(settings.store), names)
    except TagflowError as error:
        _fail(error)
    if not names:
        typer.echo("the source holds no tenant (a schema with tag_names, tag_data, tag_data_str)")
    for name in names:
        day = last[name]
        typer.echo(f"{name}\t{day.isoformat() if day else 'nothing materialised'}")


@app.command()
def serve(
    store: str | None = STORE,
    port: int = typer.Option(8000, help="TCP port to listen on."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (0.0.0.0 for all interfaces)."),
    keys_file: str | None = typer.Option(
        None, help="API keys file (default: TAGFLOW_KEYS_FILE, else .tagflow/api_keys.json)."
    ),
    source_url: str | None = typer.Option(
        None,
        help="Source database for days not materialised (default: TAGFLOW_SOURCE_URL, else the "
        "demo's embedded server if it exists, else no fallback).",
    ),
) -> None:
    """Serve the read API (FastAPI + uvicorn): JSON or Arrow IPC, one API key per tenant."""
    from tagflow.readapi.server.app import serve as serve_read_api

    try:
        settings = _settings(store=store, keys_file=keys_file, source_url=source_url)
        if settings.source_url is None:
            console.print("no source database: days not materialised will be refused")
        serve_read_api(settings, port, host)
    except TagflowError as error:
        _fail(error)


def _add_command_groups() -> None:
    from tagflow.cli.annotations import annotations_app
    from tagflow.cli.derived import derived_app
    from tagflow.cli.store import store_app
    from tagflow.readapi.server.keys import keys_app

    for group, name, help_text in (
        (keys_app, "keys", "Manage the read API's per-tenant keys."),
        (derived_app, "derived", "Check and list derived tags."),
        (store_app, "store", "Look after the dataset store (sweep temp files)."),
        (annotations_app, "annotations", "Export span annotations."),
    ):
        app.add_typer(group, name=name, help=help_text)


_add_command_groups()

if __name__ == "__main__":
    app()
