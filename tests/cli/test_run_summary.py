"""The summary an in-process range prints, from hand-made run outcomes: stretches of days by
outcome, counts that never call a failed day done, and rerun commands that group the failed and
not-started days into contiguous ranges."""

from __future__ import annotations

import io
from datetime import date, timedelta

from tagflow.cli.failures import INTERRUPTED, RunFailure, day_ranges, rerun_commands
from tagflow.cli.runs import PartitionRun
from tagflow.cli.summary import RangeSummary

D = [date(2026, 3, 1) + timedelta(days=n) for n in range(10)]
LOST = RunFailure("unreachable", "the source went away", "rerun once the source is back", True)
AUDIT = RunFailure("audit", "spans: begin after end", "see the run's audit")
COMMAND = ["tagflow", "backfill", "--in-process"]


def run(
    days: list[date], failure: RunFailure | None = None, run_id: str = "0123456789"
) -> PartitionRun:
    return PartitionRun("acme", tuple(days), run_id, failure is None, failure)


def test_contiguous_days_become_end_exclusive_ranges() -> None:
    assert day_ranges([D[4], D[0], D[1], D[2], D[6]]) == [(D[0], D[3]), (D[4], D[5]), (D[6], D[7])]
    assert day_ranges([]) == []


def test_rerun_commands_put_tenant_and_range_after_the_command_name() -> None:
    assert rerun_commands(COMMAND, "acme", [D[2], D[3], D[7]]) == [
        "tagflow backfill --tenant acme --start 2026-03-03 --end 2026-03-05 --in-process",
        "tagflow backfill --tenant acme --start 2026-03-08 --end 2026-03-09 --in-process",
    ]


def test_failed_days_are_counted_failed_and_rerun_with_the_days_not_started() -> None:
    runs = [run(D[0:3]), run(D[3:6], LOST, "abcdef0123")]
    summary = RangeSummary("acme", D, runs)
    assert summary.done == D[0:3] and summary.failed == D[3:6] and summary.not_started == D[6:]
    assert summary.lines(COMMAND) == [
        "acme 2026-03-01..2026-03-03: ok",
        "acme 2026-03-04..2026-03-06: FAILED, unreachable: the source went away; rerun once the "
        "source is back (run abcdef01)",
        "acme 2026-03-07..2026-03-10: not started (after a failure every later day shares)",
        "3 of 10 days done, 3 failed, 4 not started",
        "to run them again:",
        "  tagflow backfill --tenant acme --start 2026-03-04 --end 2026-03-11 --in-process",
    ]


def test_days_of_a_run_ctrl_c_stopped_are_interrupted_not_failed_and_rerun() -> None:
    runs = [run(D[0:2]), run(D[2:5], INTERRUPTED, "fedcba9876")]
    summary = RangeSummary("acme", D[:7], runs)
    assert summary.failed == [] and summary.stopped == D[2:5]
    assert summary.lines(COMMAND, interrupted=True) == [
        "acme 2026-03-01..2026-03-02: ok",
        "acme 2026-03-03..2026-03-05: interrupted by Ctrl-C, not done; each file is old or new, "
        "never partial (run fedcba98)",
        "acme 2026-03-06..2026-03-07: not started (interrupted)",
        "2 of 7 days done, 3 interrupted, 2 not started; interrupted by Ctrl-C",
        "to run them again:",
        "  tagflow backfill --tenant acme --start 2026-03-03 --end 2026-03-08 --in-process",
    ]


def test_a_failure_between_successes_gives_one_rerun_range_per_gap() -> None:
    runs = [run([D[0]]), run([D[1]], AUDIT, "1111111111"), run([D[2]]), run([D[3]], AUDIT)]
    lines = RangeSummary("acme", D[:4], runs).lines(["tagflow", "materialize"])
    assert lines[-3:] == [
        "to run them again:",
        "  tagflow materialize --tenant acme --start 2026-03-02 --end 2026-03-03",
        "  tagflow materialize --tenant acme --start 2026-03-04 --end 2026-03-05",
    ]
    assert "2 of 4 days done, 2 failed" in lines


def test_all_done_prints_no_rerun_command() -> None:
    lines = RangeSummary("acme", D[:2], [run(D[:2])]).lines(COMMAND)
    assert lines == ["acme 2026-03-01..2026-03-02: ok", "2 of 2 days done"]


def test_the_progress_bar_shows_failed_days_as_failed_never_as_done(monkeypatch) -> None:
    from rich.console import Console

    from tagflow.cli import app

    screen = Console(file=io.StringIO(), force_terminal=True, width=120, record=True)
    monkeypatch.setattr(app, "console", screen)
    with app._run_progress() as progress:
        task = progress.add_task("materialise acme", total=5, failed="")
        app._count(progress, task, run(D[0:2]))
        app._count(progress, task, run([D[2]], LOST))
        app._count(progress, task, run([D[3]], AUDIT))
        assert progress.tasks[task].completed == 2
    assert "2/5 days done, 2 failed" in screen.export_text().splitlines()[-1]
