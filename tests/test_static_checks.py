"""The code stays as clean as it is: ruff's lint and formatter, and mypy over every product
package, run with the test suite (the one command CI runs)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
    "package-dir"
]
BIN = Path(sys.executable).parent


def run(*command: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_ruff_finds_nothing():
    result = run(BIN / "ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_changes_nothing():
    result = run(BIN / "ruff", "format", "--check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def package_tree(folder: Path) -> Path:
    """The installed shape of the product (`assets/` is `tagflow.assets`), as links: mypy finds
    modules by path, and the package-dir mapping is not a path it can follow."""
    package = folder / "tagflow"
    package.mkdir()
    for entry in (ROOT / "tagflow").iterdir():
        (package / entry.name).symlink_to(entry)
    for name, source in PACKAGE_DIRS.items():
        if name != "tagflow":
            (package / name.removeprefix("tagflow.")).symlink_to(ROOT / source)
    return folder


def test_mypy_finds_no_type_errors(tmp_path):
    tree = package_tree(tmp_path)
    result = run(
        BIN / "mypy",
        "--config-file", ROOT / "pyproject.toml",
        "--cache-dir", ROOT / ".mypy_cache",
        "--python-executable", sys.executable,
        "-p", "tagflow",
        cwd=tree,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-20_000:] + result.stderr
