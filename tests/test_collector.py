"""The collector pause around record building: paused inside, running again after the last
overlapping pause ends (also after an error), and left disabled when it was disabled before;
and a process's start frozen out of later collections."""

import gc
import subprocess
import sys
import threading

import pytest

from tagflow.collector import collector_paused


@pytest.fixture(autouse=True)
def collector_restored():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_paused_inside_and_running_after_even_after_an_error():
    gc.enable()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("building failed")
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled():
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def test_overlapping_pauses_on_two_threads_resume_after_the_last():
    gc.enable()
    entered, release = threading.Event(), threading.Event()

    def other() -> None:
        with collector_paused():
            entered.set()
            release.wait(30)

    thread = threading.Thread(target=other)
    thread.start()
    assert entered.wait(30)
    with collector_paused():
        pass
    assert not gc.isenabled()  # the other thread still builds
    release.set()
    thread.join(30)
    assert gc.isenabled()


def test_what_a_process_builds_at_its_start_is_frozen_and_the_collector_runs_after():
    # In a process of its own: freezing is for a process's start (the command's entry point).
    code = (
        "import gc\n"
        "from tagflow.collector import long_lived\n"
        "with long_lived():\n"
        "    paused = not gc.isenabled()\n"
        "    kept = [[] for _ in range(5000)]\n"
        "print(paused, gc.isenabled(), gc.get_freeze_count() >= 5000)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["True", "True", "True"], done.stderr
