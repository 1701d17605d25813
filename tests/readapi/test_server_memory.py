"""The service keeps what it frees for its next answer (readapi/server/memory.py): large blocks
freed and taken again fault no pages in, where glibc's defaults give them back at once. Each
case runs in a subprocess, since glibc's settings are the whole process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tagflow.readapi.server.memory import _MALLOC_ENV, _libc_function

# Three 8 MiB blocks taken and freed four times: by default the first frees raise glibc's mmap
# threshold to 8 MiB, and the 24 MiB then freed at the heap's top passes its trim threshold
# (twice that), so each round faults about 1,000 pages in again.
_ROUNDS = """
import json, os, resource, sys
import numpy as np
from tagflow.readapi.server.memory import _MALLOC_ENV, _libc_function, keep_freed_memory
took = keep_freed_memory() if sys.argv[1] == "keep" else None
why = {"env": [name for name in _MALLOC_ENV if name in os.environ],
       "mallopt": _libc_function("mallopt") is not None}
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [np.ones(1 << 20) for _ in range(3)]
    del blocks
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"took": took, "faults": faults, "why": why}))
"""


def _rounds(mode: str, env: dict[str, str] | None = None) -> dict:
    # Without glibc settings the test process may hold: a dask nanny started by another test
    # puts MALLOC_TRIM_THRESHOLD_ into its process's environment.
    if env is None:
        env = {name: value for name, value in os.environ.items() if name not in _MALLOC_ENV}
    done = subprocess.run(
        [sys.executable, "-c", _ROUNDS, mode], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(done.stdout)


@pytest.mark.skipif(_libc_function("mallopt") is None, reason="glibc's malloc only")
def test_freed_blocks_are_reused_without_faulting_their_pages_in_again():
    kept = _rounds("keep")
    assert kept["took"] is True, kept["why"]
    assert max(kept["faults"][1:]) < 100, kept
    # What the setting changes: the same rounds with glibc's defaults fault each time.
    default = _rounds("default")
    assert min(default["faults"][1:]) > 500, default


@pytest.mark.skipif(_libc_function("mallopt") is None, reason="glibc's malloc only")
def test_an_operators_malloc_settings_are_kept():
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "0"}
    assert _rounds("keep", env)["took"] is False
