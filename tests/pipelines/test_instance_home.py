"""A Dagster home whose first opening is killed (kill -9, Ctrl-C at the first command on a new
machine) still opens afterwards with every table: its SQLite storage appears whole or not at
all, never half created (which made every later command fail with "run dagster instance
migrate")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tagflow.pipelines.instance import dagster_instance
from tagflow.settings import Settings

OPEN_HOME = (
    "from tagflow.pipelines.instance import dagster_instance; "
    "from tagflow.settings import Settings; "
    "print('importing done', flush=True); "
    "dagster_instance(Settings.from_env()); "
    "print('opened', flush=True)"
)


def open_and_kill(home: Path, after_s: float | None) -> tuple[bool, float]:
    """Open `home` in a fresh process and SIGKILL it `after_s` seconds after its imports (None:
    let it finish); whether it was killed before it had opened the home, and how long after
    its imports it had run."""
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    process = subprocess.Popen(
        [sys.executable, "-c", OPEN_HOME], env=env, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "importing done"
    began = time.monotonic()
    if after_s is not None:
        time.sleep(after_s)
        process.send_signal(signal.SIGKILL)
    out, _ = process.communicate(timeout=60)
    return "opened" not in out, time.monotonic() - began


def usable(home: Path, monkeypatch) -> None:
    """Every storage of the home answers: runs, event log (dynamic partitions), schedules."""
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dagster_instance(Settings())
    try:
        instance.add_dynamic_partitions("tenant", ["t1"])
        assert instance.has_dynamic_partition("tenant", "t1")
        assert instance.get_runs() == []
        assert instance.all_instigator_state() == []
        assert instance.get_asset_keys() == []
    finally:
        instance.dispose()


def test_a_home_killed_while_first_opened_opens_whole_afterwards(tmp_path, monkeypatch):
    # How long a first opening takes here, in a process like the killed ones: the kills land
    # all over it. A loaded machine may open a home faster or slower than that one did, so
    # kills that all came too late are tried again earlier.
    _, opening_s = open_and_kill(tmp_path / "timed", None)
    fractions = [(k + 0.5) / 8 for k in range(8)] + [0.05, 0.1, 0.2, 0.3] * 2
    killed = 0
    for trial, fraction in enumerate(fractions):
        if trial >= 8 and killed >= 4:
            break
        home = tmp_path / f"home{trial}"
        killed += open_and_kill(home, opening_s * fraction)[0]
        usable(home, monkeypatch)
    assert killed >= 4, "the kills came after the home was open: nothing was tested"
