"""Install check, nightly style (not part of CI): a fresh venv without the lock, a smoke check.

Installs tagflow with its dev extra into a fresh venv *without* the lock (constraints.txt), as
`pip install -e '.[dev]'` did before there was one, so a new upstream release that breaks
tagflow shows here before anyone refreshes the lock. Then a smoke check in the new venv: import
the code location, build its definitions for the demo's source (TAGFLOW_SOURCE_URL=embedded,
which starts nothing until a run reads the source) and resolve its jobs, and import the read
client. Prints the install's wall and CPU time and every package whose version differs from the
lock; exits non-zero if the install or the smoke check fails.

`--lock` installs with the lock instead, as the README's commands do (its diff must then be
empty), and `--extras pipeline` installs what the demo's command installs: that is how the
README's install times are measured (`--extras ""` installs the read client alone).

    python -m benchmarks install [--lock] [--extras dev] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.e2e import RESULTS_DIR, machine

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCK = PROJECT_ROOT / "constraints.txt"
SMOKE = """
import json, time
began = time.perf_counter()
from tagflow.pipelines.definitions import build_definitions
from tagflow.settings import Settings
repository = build_definitions(Settings.from_env()).get_repository_def()
jobs = repository.get_all_jobs()
from tagflow.readapi import Client
print(json.dumps({"smoke_s": time.perf_counter() - began, "jobs": len(jobs),
                  "assets": len(repository.asset_graph.get_all_asset_keys()),
                  "client": Client.__name__}))
"""


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(lines: list[str]) -> dict[str, str]:
    """{canonical name: version} of `name==version` lines (comments and others skipped)."""
    versions = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            versions[canonical(name.split("[", 1)[0])] = version.strip()
    return versions


def version_diff(
    locked: dict[str, str], installed: dict[str, str], *, complete: bool
) -> list[dict[str, str | None]]:
    """Packages whose version differs, with None where one side lacks the package. Packages of
    the lock that are not installed count only for a `complete` install (the lock's own extras):
    an install of fewer extras needs fewer packages."""
    names = locked.keys() | installed.keys() if complete else installed.keys()
    return [
        {"package": name, "locked": locked.get(name), "installed": installed.get(name)}
        for name in sorted(names)
        if locked.get(name) != installed.get(name)
    ]


def _timed(command: list[str], **options: Any) -> tuple[subprocess.CompletedProcess, dict]:
    """Run `command`; its wall time and the CPU time of it and every process it waited for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, **options)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return done, {
        "wall_s": wall,
        "cpu_user_s": after.ru_utime - before.ru_utime,
        "cpu_system_s": after.ru_stime - before.ru_stime,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    target = f".[{args.extras}]" if args.extras else "."
    pip_args = ["-c", str(LOCK)] if args.lock else []
    results: dict[str, Any] = {
        "machine": machine(),
        "python": platform.python_version(),
        "command": " ".join(["pip install", *pip_args, "-e", repr(target)]),
        "locked": args.lock,
    }
    with tempfile.TemporaryDirectory(prefix="tagflow-install-") as tmp:
        venv = Path(tmp) / "venv"
        python = venv / "bin" / "python"
        _, venv_time = _timed([sys.executable, "-m", "venv", str(venv)], check=True)
        installed, install_time = _timed(
            [str(python), "-m", "pip", "install", "-q", *pip_args, "-e", target],
            cwd=PROJECT_ROOT,
        )
        results["install"] = {
            key: venv_time[key] + install_time[key] for key in install_time
        }  # as the README's command line: venv, then pip
        results["install_ok"] = installed.returncode == 0
        if not results["install_ok"]:
            results["install_error"] = installed.stderr[-4000:]
            return results
        frozen = subprocess.run(
            [str(python), "-m", "pip", "freeze", "--exclude-editable"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        results["packages"] = len(pinned(frozen))
        results["differs_from_lock"] = version_diff(
            pinned(LOCK.read_text().splitlines()), pinned(frozen), complete=args.extras == "dev"
        )
        # The smoke check's own working directory and environment: nothing of the caller's
        # TAGFLOW_* settings, and any .tagflow/ it might create lands in the temp dir.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAGFLOW_")}
        env["TAGFLOW_SOURCE_URL"] = "embedded"
        smoke, smoke_time = _timed([str(python), "-c", SMOKE], cwd=tmp, env=env)
        results["smoke_ok"] = smoke.returncode == 0
        results["smoke"] = smoke_time
        if results["smoke_ok"]:
            results["smoke"].update(json.loads(smoke.stdout.strip().splitlines()[-1]))
        else:
            results["smoke_error"] = smoke.stderr[-4000:]
    return results


def print_report(results: dict[str, Any]) -> None:
    install = results["install"]
    cpu = install["cpu_user_s"] + install["cpu_system_s"]
    print(f"\n{results['command']} into a fresh venv; Python {results['python']}")
    print(results["machine"])
    print(
        f"install: {'ok' if results['install_ok'] else 'FAILED'}, wall {install['wall_s']:.1f} s, "
        f"CPU {cpu:.1f} s (user {install['cpu_user_s']:.1f} + system {install['cpu_system_s']:.1f})"
    )
    if not results["install_ok"]:
        print(results["install_error"])
        return
    differs = results["differs_from_lock"]
    print(f"{results['packages']} packages; {len(differs)} differ from constraints.txt")
    for row in differs:
        locked, installed = row["locked"] or "-", row["installed"] or "-"
        print(f"  {row['package']:<32} lock {locked:<16} now {installed}")
    smoke = results["smoke"]
    if results["smoke_ok"]:
        print(
            f"smoke check: ok in {smoke['wall_s']:.1f} s ({smoke['assets']} assets, "
            f"{smoke['jobs']} jobs, read client importable)"
        )
    else:
        print(f"smoke check: FAILED\n{results['smoke_error']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lock", action="store_true", help="install with constraints.txt (the README's way)"
    )
    parser.add_argument(
        "--extras", default="dev", help='extras to install: dev (default), or "" for none'
    )
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default: results/)")
    args = parser.parse_args(argv)
    results = measure(args)
    print_report(results)
    name = f"install-{'locked' if args.lock else 'unlocked'}-{args.extras or 'base'}.json"
    out = args.out or RESULTS_DIR / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    if not (results["install_ok"] and results.get("smoke_ok")):
        sys.exit(1)


if __name__ == "__main__":
    main()
