"""What `materialize` and `backfill` print when they end (in process, or a backfill the daemon
ran): one line per stretch of days with the same outcome, the counts, and the commands that run
again what did not succeed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from tagflow.cli.failures import day_ranges, rerun_commands
from tagflow.cli.runs import PartitionRun


@dataclass(frozen=True)
class RangeSummary:
    """The outcome of the runs over `days` of `tenant`: the days of runs that succeeded, of
    runs that failed, and those no run was started for (after a failure every later day shares,
    or Ctrl-C)."""

    tenant: str
    days: list[date]
    runs: list[PartitionRun]

    @property
    def done(self) -> list[date]:
        return [day for run in self.runs if run.success for day in run.days]

    @property
    def failed(self) -> list[date]:
        """Days of runs that failed, not those Ctrl-C stopped."""
        return [
            day for run in self.runs if not run.success and not run.interrupted for day in run.days
        ]

    @property
    def stopped(self) -> list[date]:
        """Days of the run Ctrl-C stopped: none of its days is done (a range run publishes its
        days together at its end)."""
        return [day for run in self.runs if run.interrupted for day in run.days]

    @property
    def not_started(self) -> list[date]:
        ran = {day for run in self.runs for day in run.days}
        return [day for day in self.days if day not in ran]

    def lines(
        self,
        command: list[str],
        interrupted: bool = False,
        not_started: str | None = None,
        running: bool = False,
    ) -> list[str]:
        """The summary: outcomes by stretch of days (with a failed run's id, to find it in the
        Dagster UI), the counts, and the rerun commands (`command` names the command and the
        options to repeat). `not_started` says why days have no run, when it is not a failure
        every later day shares nor Ctrl-C; with `running` (a daemon's backfill not ended yet)
        the days without a finished run are running or queued, and nothing is to rerun yet."""
        lines = []
        for label, runs in _stretches(self.runs):
            first, last = runs[0].days[0], runs[-1].days[-1]
            shown = f"{first}" if first == last else f"{first}..{last}"
            ids = ", ".join(run.run_id[:8] for run in runs[:3])
            if label == "ok":
                lines.append(f"{self.tenant} {shown}: ok")
            elif label == "interrupted":
                lines.append(
                    f"{self.tenant} {shown}: interrupted by Ctrl-C, not done; each file is old "
                    f"or new, never partial (run {ids})"
                )
            else:
                lines.append(f"{self.tenant} {shown}: FAILED, {label} (run {ids})")
        for first, end in day_ranges(self.not_started):
            last = date.fromordinal(end.toordinal() - 1)
            shown = f"{first}" if first == last else f"{first}..{last}"
            why = not_started or (
                "interrupted" if interrupted else "after a failure every later day shares"
            )
            if running:
                lines.append(f"{self.tenant} {shown}: running or queued")
            else:
                lines.append(f"{self.tenant} {shown}: not started ({why})")
        counts = [f"{len(self.done)} of {len(self.days)} days done"]
        if self.failed:
            counts.append(f"{len(self.failed)} failed")
        if self.stopped:
            counts.append(f"{len(self.stopped)} interrupted")
        if self.not_started:
            counts.append(f"{len(self.not_started)} {'to go' if running else 'not started'}")
        lines.append(", ".join(counts) + ("; interrupted by Ctrl-C" if interrupted else ""))
        if running:
            return lines
        again = rerun_commands(command, self.tenant, self.failed + self.stopped + self.not_started)
        if again:
            lines.append("to run them again:")
            lines.extend(f"  {line}" for line in again)
        return lines


def _stretches(runs: list[PartitionRun]) -> list[tuple[str, list[PartitionRun]]]:
    """Consecutive runs with the same outcome (ok, or the same failure) and adjoining days."""
    stretches: list[tuple[str, list[PartitionRun]]] = []
    for run in runs:
        if run.success or run.interrupted:
            label = "ok" if run.success else "interrupted"
        else:
            label = run.failure.line() if run.failure else "failed"
        if (
            stretches
            and stretches[-1][0] == label
            and stretches[-1][1][-1].days[-1].toordinal() + 1 == run.days[0].toordinal()
        ):
            stretches[-1][1].append(run)
        else:
            stretches.append((label, [run]))
    return stretches
