"""`tagflow demo` as a user runs it: a subprocess in its own working directory and Dagster home,
with no terminal and no stdin. It prints its summary and nothing else (no warnings, no
tracebacks), stops its embedded PostgreSQL unless told to keep it, and `tagflow serve` starts
that server again by itself afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
from typer.testing import CliRunner

from tagflow.cli.app import DEMO_MIN_TAGS, app
from tagflow.demo.synthetic_plant import DEFAULT_START, MIN_TAGS
from tagflow.source.embedded import stop_embedded_server
from tests.conftest import free_port

BIN = Path(sys.executable).parent
# Small: two tenants × 40 tags × 2 days, about 10 s, yet every kind of tag the demo shows.
DEMO = [str(BIN / "tagflow"), "demo", "--tags", "40", "--days", "2"]
DEMO_TIMEOUT_S = 300


def demo_env(workdir: Path) -> dict[str, str]:
    """The caller's environment without its tagflow settings, with a Dagster home of its own
    and CI's CI=true."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAGFLOW_", "DAGSTER_"))}
    return {**env, "DAGSTER_HOME": str(workdir / "dagster"), "CI": "true"}


def run_demo(workdir: Path, *options: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [*DEMO, *options],
        cwd=workdir,
        env=demo_env(workdir),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def start(
    workdir: Path, args: list[str], preexec_fn: Callable[[], object] | None = None
) -> subprocess.Popen[str]:
    """`args` running in `workdir` as run_demo runs the demo, output read as it comes."""
    return subprocess.Popen(
        args,
        cwd=workdir,
        env=demo_env(workdir),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=preexec_fn,
    )


def postmaster_running(data_dir: Path) -> bool:
    """Whether the postmaster named by `data_dir`'s postmaster.pid is alive."""
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().splitlines()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def assert_only_the_summary(done: subprocess.CompletedProcess) -> None:
    for name, text in (("stdout", done.stdout), ("stderr", done.stderr)):
        assert "Warning" not in text, f"{name}:\n{text}"
        assert "Traceback" not in text, f"{name}:\n{text}"
    output = done.stdout + done.stderr
    for expected in (
        "tenant acme: 40 tags",
        "Datasets written",
        "samples_str_1d",
        "acme · plant/area1/analog_00008 · samples_1h",
        "acme · plant/area6/state_00013 · spans",
        "4 Dagster runs recorded",
    ):
        assert expected in output, output
    # The closing hint opens the UI on just the demo's days, with this environment's dagster (a
    # shell need not have it on its PATH); the console may wrap it.
    end = DEFAULT_START + timedelta(days=2)
    hint = (
        f"TAGFLOW_START_DATE={DEFAULT_START.isoformat()} TAGFLOW_END_DATE={end.isoformat()} "
        f"{BIN / 'dagster'} dev -w workspace.yaml"
    )
    assert hint in " ".join(output.split()), output


def stop_command(workdir: Path) -> subprocess.CompletedProcess:
    """The command the demo names for stopping a kept server."""
    return subprocess.run(
        [sys.executable, "-m", "tagflow.source.embedded", "stop"],
        cwd=workdir,
        env=demo_env(workdir),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_demo_prints_only_its_summary_and_stops_its_server_which_serve_restarts(tmp_path):
    data_dir = tmp_path / ".tagflow" / "pg"
    try:
        done = run_demo(tmp_path)
        assert_only_the_summary(done)
        assert "stopped the embedded PostgreSQL" in done.stderr
        assert not postmaster_running(data_dir)

        # `tagflow serve` with no source URL anywhere: the demo's server, started again.
        port = free_port()
        serve = start(tmp_path, [str(BIN / "tagflow"), "serve", "--port", str(port)])
        try:
            deadline = time.monotonic() + 60
            while True:
                assert serve.poll() is None, serve.communicate()[0]
                try:
                    health = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "tagflow serve did not start"
                    time.sleep(0.2)
            assert health.json() == {"status": "ok"}
            assert postmaster_running(data_dir)
        finally:
            serve.terminate()
            log = serve.communicate(timeout=30)[0]
        assert "no source database" not in log, log
    finally:
        stop_embedded_server(data_dir)
    assert not postmaster_running(data_dir)


def test_demo_with_keep_server_leaves_it_running_and_says_how_to_stop_it(tmp_path):
    data_dir = tmp_path / ".tagflow" / "pg"
    try:
        done = run_demo(tmp_path, "--keep-server")
        assert_only_the_summary(done)
        assert "keeps running" in done.stderr
        assert "python -m tagflow.source.embedded stop" in done.stderr
        assert postmaster_running(data_dir)
        assert "stopped the embedded PostgreSQL" in stop_command(tmp_path).stdout
        assert not postmaster_running(data_dir)
    finally:
        stop_embedded_server(data_dir)


def test_demo_refuses_fewer_tags_than_the_plant_needs_before_starting_anything(
    tmp_path, monkeypatch
):
    assert DEMO_MIN_TAGS == MIN_TAGS
    monkeypatch.chdir(tmp_path)  # were the options accepted, no server starts in the project
    result = CliRunner().invoke(app, ["demo", "--tags", str(MIN_TAGS - 1)])
    assert result.exit_code == 2
    result = CliRunner().invoke(app, ["demo", "--days", "0"])
    assert result.exit_code == 2
    assert not (tmp_path / ".tagflow").exists()


def test_ctrl_c_stops_the_demo_in_a_few_lines_and_stops_its_server(tmp_path) -> None:
    # As a terminal starts it: a shell's background jobs (CI's) inherit SIGINT ignored.
    process = start(tmp_path, DEMO, lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # Its plants written, the demo materialises them: Ctrl-C falls in a Dagster run.
        seen = []
        while not any(line.startswith("tenant globex:") for line in seen):
            line = process.stdout.readline()
            assert line, "".join(seen)
            seen.append(line)
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=DEMO_TIMEOUT_S)
    finally:
        process.kill()
    output = "".join(seen) + rest
    print(output)
    assert process.returncode == 130
    assert "Traceback" not in output and "╭" not in output
    assert output.splitlines()[-1] == "demo interrupted by Ctrl-C; `tagflow demo` starts it over"
    assert len(output.splitlines()) <= 8
    assert not postmaster_running(tmp_path / ".tagflow" / "pg")
