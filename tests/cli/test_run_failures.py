"""An operator's failures, driving the real `tagflow backfill` (in process, and through the
daemon) and `tagflow materialize` (subprocesses of the venv's `tagflow`) against an embedded
PostgreSQL of this module's own, which a test stops in the middle of a backfill: the exit
status, the lines printed, the seconds to exit after the outage, the printed rerun command (run
once the source is back, it completes exactly the days that failed), Ctrl-C, and the one-line
refusals of days that have not ended or come before the partitions' first day."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from tagflow.cli.runs import next_month
from tagflow.demo.synthetic_plant import generate_plant
from tagflow.io_managers import DatasetStore
from tagflow.io_managers.compaction import compacted_days
from tagflow.pipelines.instance import prepare_dagster_home
from tagflow.schemas.registry import DATED
from tagflow.settings import Settings
from tagflow.source.connection import libpq_url
from tagflow.source.embedded import embedded_server_url, stop_embedded_server
from tests.conftest import server_home
from tests.cutting_proxy import CuttingProxy, proxied_url, upstream_of

TAGFLOW = str(Path(sys.executable).with_name("tagflow"))
WORKSPACE = Path(__file__).resolve().parents[2] / "workspace.yaml"
TENANT = "outage"
FIRST = date(2026, 3, 1)
DAYS = [FIRST + timedelta(days=n) for n in range(5)]
END = DAYS[-1] + timedelta(days=1)
# The day step retries an unreachable source for TAGFLOW_SOURCE_RETRY_BUDGET_S (30 s by
# default); the rest is the command's own start and the failed run's bookkeeping.
EXIT_AFTER_OUTAGE_S = 45
MAX_LINES = 15
SLOW_S = 240  # a bound that only a hang exceeds, on a loaded machine
HANGING = "hanging"
# A day of this tenant is about 2 MiB of COPY, the run's other reads (tag list, carry-ins,
# estimates) a few KiB per session: the connection cut after 256 KiB is the day's scan.
SCAN_CUT_AFTER = 256 * 1024


@pytest.fixture(scope="module")
def source():
    """A source with two days of rows (the later days are empty but valid), stopped and
    started by the tests; running when each test starts."""
    with server_home("tagflow-outage-") as root:
        data_dir = root / "pg"
        url = embedded_server_url(data_dir)
        generate_plant(url, [TENANT], tags=13, days=2, start=FIRST, seed=11, rows_per_tag_day=20)
        yield data_dir, url
        stop_embedded_server(data_dir)


@pytest.fixture
def env(source, tmp_path) -> dict[str, str]:
    data_dir, url = source
    embedded_server_url(data_dir)  # (re)start it
    variables = {k: v for k, v in os.environ.items() if not k.startswith("TAGFLOW_")}
    variables.update(
        DAGSTER_HOME=str(tmp_path / "dagster"),
        TAGFLOW_SOURCE_URL=url,
        TAGFLOW_STORE=str(tmp_path / "store"),
        COLUMNS="200",
    )
    (tmp_path / "dagster").mkdir()
    return variables


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [TAGFLOW, *args],
        env=env,
        cwd=env["DAGSTER_HOME"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run(args: list[str], env: dict[str, str]) -> tuple[int, list[str]]:
    done = subprocess.run(
        [TAGFLOW, *args],
        env=env,
        cwd=env["DAGSTER_HOME"],
        capture_output=True,
        text=True,
        timeout=SLOW_S,
    )
    return done.returncode, (done.stdout + done.stderr).splitlines()


def published(env: dict[str, str], tenant: str = TENANT) -> set[date]:
    """Days whose every dated dataset has its file."""
    store = DatasetStore(env["TAGFLOW_STORE"])
    days = [set(store.materialised_days(dataset, tenant)) for dataset in DATED]
    return set.intersection(*days)


def day_files(env: dict[str, str]) -> list[Path]:
    return [path for path in Path(env["TAGFLOW_STORE"]).rglob("date=*/*") if path.is_file()]


def wait_for_days(process: subprocess.Popen[str], env: dict[str, str], count: int) -> None:
    deadline = time.monotonic() + SLOW_S
    while len(published(env)) < count:
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "the backfill made no progress"
        time.sleep(0.1)


def backfill_args(first: date = FIRST, end: date = END) -> list[str]:
    return ["backfill", "--tenant", TENANT, "--start", str(first), "--end", str(end)] + [
        "--in-process",
        "--days-per-run",
        "1",
    ]


def runs_of(env: dict[str, str]) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        return instance.get_runs()


def rerun_ranges(lines: list[str]) -> list[tuple[list[str], set[date]]]:
    """The printed rerun commands: their arguments and the days each covers."""
    commands = []
    for line in lines:
        if re.match(r"\s+tagflow backfill ", line):
            args = shlex.split(line)
            first = date.fromisoformat(args[args.index("--start") + 1])
            end = date.fromisoformat(args[args.index("--end") + 1])
            days = {first + timedelta(days=n) for n in range((end - first).days)}
            commands.append((args[1:], days))
    return commands


def test_source_stopped_mid_backfill_fails_fast_in_a_few_lines_with_a_rerun_command(
    source, env
) -> None:
    data_dir, _ = source
    process = start(backfill_args(), env)
    wait_for_days(process, env, 2)
    stop_embedded_server(data_dir)
    stopped = time.monotonic()
    output, _ = process.communicate(timeout=SLOW_S)
    exit_after_s = time.monotonic() - stopped
    lines = output.splitlines()
    done = published(env)
    print(f"exit after the outage: {exit_after_s:.1f} s, {len(lines)} lines:\n{output}")

    assert process.returncode == 1
    assert exit_after_s <= EXIT_AFTER_OUTAGE_S
    assert len(lines) <= MAX_LINES and "Traceback" not in output
    assert any(TENANT in line and "FAILED, unreachable" in line for line in lines)
    # The progress counts: days done are the days published; a failed day is never done.
    failed = set(DAYS) - done
    assert f"{len(done)} of {len(DAYS)} days done" in output
    # Fail fast: one failed run, and no run started after it.
    runs = runs_of(env)
    assert len(runs) == len(done) + 1
    assert sum(run.status == dg.DagsterRunStatus.FAILURE for run in runs) == 1
    # One command reruns exactly the days that failed or were not started.
    (args, days), *more = rerun_ranges(lines)
    assert more == [] and days == failed

    embedded_server_url(data_dir)
    # The day files (the tenant's tag list, not dated, is written by every run).
    before = {path: path.stat().st_mtime_ns for path in day_files(env)}
    code, rerun_lines = run(args, env)
    assert code == 0, rerun_lines
    assert published(env) == set(DAYS)
    assert f"{len(failed)} of {len(failed)} days done" in "\n".join(rerun_lines)
    # The days that had succeeded were not run again.
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in before.items())


def test_ctrl_c_stops_the_whole_backfill_and_says_what_completed(env) -> None:
    process = start(backfill_args(), env)
    wait_for_days(process, env, 2)
    process.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    output, _ = process.communicate(timeout=SLOW_S)
    exit_after_s = time.monotonic() - interrupted
    print(f"exit after Ctrl-C: {exit_after_s:.1f} s:\n{output}")
    time.sleep(1)
    done = published(env)

    assert process.returncode == 130
    assert "interrupted by Ctrl-C" in output and "Traceback" not in output
    # What completed: the days of the runs that succeeded, a prefix of the range. Ctrl-C may
    # fall after the interrupted run published its day's files (in its checks): whole files,
    # counted not done, and run again by the rerun command.
    counted = int(re.search(r"(\d+) of 5 days done", output).group(1))
    assert set(DAYS[:counted]) <= done <= set(DAYS[: counted + 1])
    # No run after the interrupted one, none left running, nothing staged left behind.
    runs = runs_of(env)
    assert counted <= len(runs) <= counted + 1
    assert all(run.status != dg.DagsterRunStatus.STARTED for run in runs)
    assert not [path for path in Path(env["TAGFLOW_STORE"]).rglob("*.tmp")]
    (_, days), *_ = rerun_ranges(output.splitlines())
    assert days == set(DAYS[counted:])


def test_ctrl_c_stops_a_range_run_at_once_while_its_source_hangs(source, env) -> None:
    # One run over both days (the default), its day scan held by a source that stopped
    # answering (a black hole: only the 15-minute statement timeout would end the read).
    # Ctrl-C must stop the command now: not wait for the read, not retry the day step.
    _, url = source
    generate_plant(url, [HANGING], tags=40, days=2, start=FIRST, seed=12, rows_per_tag_day=2000)
    proxy = CuttingProxy(upstream_of(url))
    proxy.arm("blackhole", SCAN_CUT_AFTER)
    args = ["backfill", "--tenant", HANGING, "--start", str(FIRST), "--end", str(DAYS[2])]
    process = start([*args, "--in-process"], {**env, "TAGFLOW_SOURCE_URL": proxied_url(url, proxy)})
    try:
        deadline = time.monotonic() + SLOW_S
        while proxy.cuts == 0:
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the day's scan was never cut"
            time.sleep(0.05)
        time.sleep(1)  # the scan waits on the black hole
        process.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        output, _ = process.communicate(timeout=SLOW_S)
    finally:
        process.kill()
        proxy.close()
    exit_after_s = time.monotonic() - interrupted
    lines = output.splitlines()
    print(f"exit after Ctrl-C: {exit_after_s:.1f} s, {len(lines)} lines:\n{output}")

    assert process.returncode == 130
    assert "Traceback" not in output and len(lines) <= MAX_LINES
    assert lines[0].startswith(f"{HANGING} {DAYS[0]}..{DAYS[1]}: interrupted by Ctrl-C, not done")
    assert lines[1] == "0 of 2 days done, 2 interrupted; interrupted by Ctrl-C"
    # The one run stopped (not retried: one attempt of the day step), nothing of it published.
    (run,) = runs_of(env)
    assert run.status != dg.DagsterRunStatus.STARTED
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        retries = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert retries == []
    assert published(env, HANGING) == set()
    assert not [path for path in Path(env["TAGFLOW_STORE"]).rglob("*.tmp")]
    (_, days), *_ = rerun_ranges(lines)
    assert days == set(DAYS[:2])


def test_a_store_that_cannot_be_written_fails_fast_in_one_line_without_its_path(
    env, tmp_path
) -> None:
    # A store under a file: its folders cannot be made (root can write anywhere else).
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    store = blocker / "store"
    code, lines = run(backfill_args(), {**env, "TAGFLOW_STORE": str(store)})
    output = "\n".join(lines)
    print(output)

    assert code == 1 and "Traceback" not in output and str(tmp_path) not in output
    assert lines[0].startswith(
        f"{TENANT} {DAYS[0]}: FAILED, store: the day's files could not be written (Not a "
        "directory); nothing of these days was published;"
    )
    # Every later day would fail the same way: no further run, one rerun command for all.
    assert (
        lines[1]
        == f"{TENANT} {DAYS[1]}..{DAYS[-1]}: not started (after a failure every later day shares)"
    )
    assert len(runs_of(env)) == 1
    (_, days), *more = rerun_ranges(lines)
    assert more == [] and days == set(DAYS)


def test_compact_copies_a_month_given_the_source_url_as_an_option(env) -> None:
    # What an interrupted month copy prints to run: `tagflow compact`, the source URL given
    # again as an option (never printed: it may hold a password).
    code, lines = run(
        ["materialize", "--tenant", TENANT, "--start", str(FIRST), "--end", str(END)], env
    )
    assert code == 0, lines
    options = {key: value for key, value in env.items() if key != "TAGFLOW_SOURCE_URL"}
    month = f"{FIRST:%Y-%m}"
    args = ["compact", "--tenant", TENANT, "--start", month, "--end", f"{next_month(FIRST):%Y-%m}"]
    code, lines = run([*args, "--source-url", env["TAGFLOW_SOURCE_URL"]], options)
    assert code == 0, lines
    assert len(lines) == 1 and lines[0].startswith(f"{TENANT} {month}: ok (run ")
    footer = DatasetStore(env["TAGFLOW_STORE"]).month_footer("spans", TENANT, FIRST)
    assert footer is not None and sorted(compacted_days(footer)) == DAYS


def test_a_day_that_has_not_ended_is_one_line(env) -> None:
    today = datetime.now(UTC).date()
    for command in ("materialize", "backfill"):
        args = [command, "--tenant", TENANT, "--start", str(today - timedelta(days=1))]
        code, lines = run([*args, "--end", str(today + timedelta(days=1))], env)
        assert code == 2
        assert lines == [
            f"error: {today} has not ended; the last complete day is {today - timedelta(days=1)}"
        ]


def test_a_start_before_the_partitions_first_day_is_one_line(env) -> None:
    args = ["materialize", "--tenant", TENANT, "--start", "2019-12-31", "--end", "2020-01-02"]
    code, lines = run(args, {**env, "TAGFLOW_START_DATE": "2020-01-01"})
    assert code == 2
    assert lines == [
        "error: 2019-12-31 is before the partitions' first day, 2020-01-01 (TAGFLOW_START_DATE)"
    ]


def test_a_day_past_the_partitions_end_is_one_line(env) -> None:
    args = ["backfill", "--tenant", TENANT, "--start", str(FIRST), "--end", str(END)]
    code, lines = run([*args, "--in-process"], {**env, "TAGFLOW_END_DATE": str(DAYS[2])})
    assert code == 2
    assert lines == [
        f"error: {DAYS[2]} is after the partitions' last day, {DAYS[1]} "
        f"(TAGFLOW_END_DATE is {DAYS[2]}, exclusive)"
    ]


def test_a_source_that_refuses_tagflow_is_one_line_without_retries(env) -> None:
    url = env["TAGFLOW_SOURCE_URL"]
    missing = re.sub(r"/[^/?]*(\?|$)", r"/no_such_database\1", url, count=1)
    assert missing != url
    began = time.monotonic()
    args = ["materialize", "--tenant", TENANT, "--start", str(FIRST), "--end", str(DAYS[1])]
    code, lines = run(args, {**env, "TAGFLOW_SOURCE_URL": missing})
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {TENANT} {FIRST}..{DAYS[1]}")
    assert "database named in the URL does not exist" in lines[0]
    assert "attempt" not in lines[0]  # refused at the first answer, not retried
    assert time.monotonic() - began < SLOW_S


@pytest.mark.parametrize(
    ("tenant", "change", "says"),
    [
        (
            "drifted",
            "DROP VIEW drifted.metrics; "
            "ALTER TABLE drifted.tag_data ALTER COLUMN tag_value TYPE numeric",
            "drifted.tag_data.tag_value is numeric, expected double precision",
        ),
        (
            "duplicated",
            # as a source that lost its UNIQUE constraint
            "ALTER TABLE duplicated.tag_names DROP CONSTRAINT tag_names_normalized_name_key; "
            "INSERT INTO duplicated.tag_names (id, normalized_name, birth_at) "
            "SELECT 9999, normalized_name, birth_at FROM duplicated.tag_names ORDER BY id LIMIT 1",
            "tag names are not unique",
        ),
    ],
)
def test_schema_drift_and_duplicate_names_are_one_line_naming_tenant_days_and_fix(
    source, env, tenant, change, says
) -> None:
    _, url = source
    generate_plant(url, [tenant], tags=13, days=1, start=FIRST, seed=2, rows_per_tag_day=5)
    with psycopg.connect(libpq_url(url), autocommit=True) as admin:
        admin.execute(change)
    args = ["backfill", "--tenant", tenant, "--start", str(FIRST), "--end", str(END)]
    code, lines = run([*args, "--in-process"], env)
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {tenant} {FIRST}..{END}")
    assert says in lines[0] and ("Restore" in lines[0] or "rename or remove" in lines[0])
    assert not Path(env["TAGFLOW_STORE"]).exists() or day_files(env) == []


def test_a_month_whose_days_all_succeeded_is_copied_although_a_later_range_failed(
    source, env
) -> None:
    data_dir, _ = source
    february = [date(2026, 2, 1) + timedelta(days=n) for n in range(28)]
    args = ["backfill", "--tenant", TENANT, "--start", "2026-02-01", "--end", "2026-03-03"]
    # The retry budget is not what this test is about: 1 s makes the failure come at once.
    quick = {**env, "TAGFLOW_SOURCE_RETRY_BUDGET_S": "1"}
    process = start([*args, "--in-process", "--days-per-run", "28"], quick)
    wait_for_days(process, env, len(february))
    stop_embedded_server(data_dir)
    output, _ = process.communicate(timeout=SLOW_S)
    print(output)

    assert process.returncode == 1
    assert published(env) == set(february)
    copies = Path(env["TAGFLOW_STORE"], "_compacted")
    assert {path.parent.name for path in copies.rglob("*.parquet")} == {"month=2026-02"}
    assert "tagflow backfill --tenant outage --start 2026-03-01 --end 2026-03-03" in output


def test_a_daemon_backfill_whose_source_goes_away_is_summarised_with_a_rerun_command(
    source, env
) -> None:
    """`tagflow backfill` without --in-process: the daemon runs the range; the source stops
    once the backfill is submitted, so its run fails. The waiting command and `tagflow
    backfill-status` print the failure in one classified line and the command that reruns
    exactly the failed days. (That a rerun completes what failed, leaving the rest alone, is
    the in-process test's: the daemon's runs are the same runs, and each one costs this test
    tens of seconds.)"""
    data_dir, _ = source
    end = FIRST + timedelta(days=3)
    days = {FIRST + timedelta(days=n) for n in range(3)}
    # The retry budget is not what this test is about: 1 s makes the failure come at once.
    env = {**env, "TAGFLOW_SOURCE_RETRY_BUDGET_S": "1"}
    prepare_dagster_home(Settings.from_env(env), env["DAGSTER_HOME"])
    daemon_log = Path(env["DAGSTER_HOME"]) / "daemon.log"
    daemon = subprocess.Popen(
        [str(Path(TAGFLOW).with_name("dagster-daemon")), "run", "-w", str(WORKSPACE)],
        cwd=WORKSPACE.parent,
        env=env,
        stdout=daemon_log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # As on call: the daemon is up when the operator submits.
        wait_for_backfill_daemon(env, daemon, daemon_log)
        process = start(
            ["backfill", "--tenant", TENANT, "--start", str(FIRST), "--end", str(end)], env
        )
        assert process.stdout is not None
        first_line = process.stdout.readline()
        assert "submitted" in first_line, first_line + process.communicate()[0]
        stop_embedded_server(data_dir)
        stopped = time.monotonic()
        output, _ = process.communicate(timeout=SLOW_S)
        exit_after_s = time.monotonic() - stopped
        output = first_line + output
        lines = output.splitlines()
        print(f"exit after the outage: {exit_after_s:.1f} s, {len(lines)} lines:\n{output}")
        code, status_lines = run(["backfill-status"], env)
        print("\n".join(status_lines))
    finally:
        if daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=60)

    assert process.returncode == 1
    assert len(lines) <= MAX_LINES and "Traceback" not in output
    assert "COMPLETED_FAILED" in lines[1]
    failed = [line for line in lines if ": FAILED, " in line]
    assert len(failed) == 1, output
    assert failed[0].startswith(f"{TENANT} {FIRST}..{end - timedelta(days=1)}: FAILED, unreachable")
    assert f"0 of {len(days)} days done, {len(days)} failed" in output
    (args, rerun_days), *more = rerun_ranges(lines)
    assert more == [] and rerun_days == days and "--in-process" not in args
    # Later, from any shell: the same summary of the last backfill.
    assert code == 1
    assert [line for line in status_lines if ": FAILED, " in line] == failed
    assert rerun_ranges(status_lines) == rerun_ranges(lines)


def wait_for_backfill_daemon(
    env: dict[str, str], daemon: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + SLOW_S
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        while "BACKFILL" not in instance.get_daemon_heartbeats():
            assert daemon.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the daemon never reported"
            time.sleep(0.5)
