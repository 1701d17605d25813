"""Why an in-process run failed, in one line an operator can act on, read back from the run's
Dagster event log (which keeps the whole stack trace for the UI and `--verbose`); and the
commands that rerun the days that failed."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg

from tagflow.assets.store_errors import STORE_WRITE_FAILED
from tagflow.pipelines.dagster_internals import ErrorSource

# What each kind of failure means and what to do, keyed by the tagflow error the step raised.
# A kind that `stops` holds for every day of the tenant: later ranges would fail the same way.
_KINDS: dict[str, tuple[str, str, bool]] = {
    "SourceUnavailable": (
        "unreachable",
        "nothing of these days was published; rerun once the source is back",
        True,
    ),
    "SourceRefused": (
        "refused",
        "fix the source URL or the role, then rerun",
        True,
    ),
    "SchemaDrift": (
        "schema drift",
        "restore the tenant's source tables, then rerun",
        True,
    ),
    "SourceDataError": ("bad data", "fix the source data, then rerun", True),
    "UnknownTenant": ("unknown tenant", "check the tenant's name and its role's grants", True),
    "InvalidDerivedTag": ("derived tags", "fix the derived tags file, then rerun", True),
    "AuditFailed": ("audit", "nothing was published; see the run's audit in the Dagster UI", False),
    STORE_WRITE_FAILED: (
        "store",
        "nothing of these days was published; the store (--store, TAGFLOW_STORE) and the temp "
        "folder must be creatable and writable, with free space; then rerun",
        True,
    ),
}
_INTERRUPTS = {"DagsterExecutionInterruptedError", "KeyboardInterrupt"}


@dataclass(frozen=True)
class RunFailure:
    """Why a run failed: `kind` (a short label), `reason` (the error's own message, one line),
    `advice` (what to do), `stops` (whether the tenant's later days would fail the same way),
    and `trace`, the stack trace Dagster recorded, for --verbose."""

    kind: str
    reason: str
    advice: str
    stops: bool = False
    trace: str = ""

    @property
    def interrupted(self) -> bool:
        return self.kind == "interrupted"

    def line(self) -> str:
        reason = self.reason.rstrip(". ")
        return f"{self.kind}: {reason}; {self.advice}" if reason else f"{self.kind}; {self.advice}"


# Every file is published whole (write, audit, publish), so an interrupted run left each of
# its files as it was or as the run wrote it; a rerun makes its days whole again.
INTERRUPTED = RunFailure(
    "interrupted", "", "stopped by Ctrl-C; each file is old or new, never partial"
)


def run_failure(instance: dg.DagsterInstance, run_id: str) -> RunFailure:
    """Why run `run_id` failed, from its first step failure (or the run's own failure)."""
    records = instance.all_logs(
        run_id, of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE}
    )
    for record in records:
        event = record.dagster_event
        if event is None or event.event_type != dg.DagsterEventType.STEP_FAILURE:
            continue
        data = event.step_failure_data
        trace = data.error.to_string() if data.error is not None else ""
        if data.error_source == ErrorSource.INTERRUPT or _names(data.error) & _INTERRUPTS:
            return INTERRUPTED
        name, message = _tagflow_error(data)
        if name in _KINDS:
            kind, advice, stops = _KINDS[name]
            return RunFailure(kind, message, advice, stops, trace)
        return RunFailure(
            "failed",
            f"{name}: {message}" if name else message,
            "see the run in the Dagster UI, or rerun with --verbose",
            trace=trace,
        )
    events = [r.dagster_event for r in records if r.dagster_event is not None]
    messages = [event.message or "" for event in events]
    if any(name in message for message in messages for name in _INTERRUPTS) or any(
        _interrupted_run(event) for event in events
    ):
        return INTERRUPTED
    return RunFailure(
        "failed",
        _first_line(messages[0]) if messages else "",
        "see the run in the Dagster UI, or rerun with --verbose",
    )


def _interrupted_run(event) -> bool:
    """Whether a run failure is Ctrl-C's that fell outside every step (between two steps, or
    as the run set up or ended): Dagster then records no step failure, only the run's, with
    the interrupt as its error."""
    if event.event_type != dg.DagsterEventType.RUN_FAILURE:
        return False
    data = event.event_specific_data
    return data is not None and bool(_names(getattr(data, "error", None)) & _INTERRUPTS)


def _names(error) -> set[str]:
    """The class names along an error's chain of causes."""
    names = set()
    while error is not None:
        names.add(error.cls_name)
        error = error.cause or error.context
    return names


def _tagflow_error(data) -> tuple[str, str]:
    """The class name and message of the error behind a step failure: a Failure's `error`
    metadata and description, else the innermost tagflow error of the chain (Dagster wraps a
    raised error in its retry and execution errors)."""
    user = data.user_failure_data
    if user is not None:
        named = user.metadata.get("error")
        return (str(named.value) if named is not None else "", _first_line(user.description))
    error, found = data.error, ("", "")
    while error is not None:
        # Dagster's own wrappers say only that the step failed: the error they wrap says why.
        if error.cls_name in _KINDS or not found[0] or found[0].startswith("Dagster"):
            found = (error.cls_name, _first_line(error.message.split(": ", 1)[-1]))
        if error.cls_name in _KINDS:
            return found
        error = error.cause or error.context
    return found


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def day_ranges(days: list[date]) -> list[tuple[date, date]]:
    """Contiguous runs of `days` as [first, day after the last) pairs, in order."""
    ranges: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if ranges and ranges[-1][1] == day:
            ranges[-1] = (ranges[-1][0], day + timedelta(days=1))
        else:
            ranges.append((day, day + timedelta(days=1)))
    return ranges


def rerun_commands(command: list[str], tenant: str, days: list[date]) -> list[str]:
    """The shell commands (`command` then tenant and range options) that run `days` again, one
    per contiguous range."""
    return [
        shlex.join(
            [*command[:2], "--tenant", tenant, "--start", first.isoformat()]
            + ["--end", end.isoformat(), *command[2:]]
        )
        for first, end in day_ranges(days)
    ]
