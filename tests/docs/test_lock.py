"""The README's install commands and CI install through the lock, constraints.txt: it pins every
requirement of pyproject.toml (dependencies and every extra) at a version the requirement
allows, so a dependency added without refreshing the lock (`.ci/lock`) fails here, not as an
unpinned install on the next fresh machine."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "constraints.txt"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def locked_versions() -> dict[str, str]:
    versions = {}
    for line in LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            versions[canonicalize_name(name)] = version.strip()
    return versions


def requirements() -> list[Requirement]:
    """Every requirement pyproject.toml names, but tagflow's own extras (`tagflow[...]`)."""
    found = [Requirement(text) for text in PROJECT["dependencies"]]
    for extra in PROJECT["optional-dependencies"].values():
        found += [Requirement(text) for text in extra]
    return [r for r in found if canonicalize_name(r.name) != canonicalize_name(PROJECT["name"])]


def test_the_lock_pins_every_requirement_at_a_version_it_allows():
    locked = locked_versions()
    stale = []
    for requirement in requirements():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue  # not for this platform or Python
        version = locked.get(canonicalize_name(requirement.name))
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            stale.append(f"{requirement} (locked: {version})")
    assert not stale, f"constraints.txt is stale, refresh it with .ci/lock: {stale}"


def test_the_lock_pins_exact_versions_and_never_tagflow_itself():
    lines = [line for line in LOCK.read_text().splitlines() if line and not line.startswith("#")]
    assert lines and all(line.count("==") == 1 for line in lines)
    assert canonicalize_name(PROJECT["name"]) not in locked_versions()


def test_ci_installs_through_the_lock():
    run = (ROOT / ".ci" / "run").read_text()
    assert "pip install -q -c constraints.txt -e '.[dev]'" in run
