"""A run whose process was killed is marked failed and gives its source_db pool slots back, so
later runs in the same Dagster home do not wait forever for a slot."""

import os
import socket
import subprocess
import sys

import dagster as dg
from dagster._core.storage.dagster_run import DagsterRun

from tagflow.cli.runs import HOST_TAG, PID_TAG, reap_orphaned_runs


def started_run(instance: dg.DagsterInstance, pid: int, host: str) -> str:
    run = DagsterRun(
        job_name="__ASSET_JOB",
        status=dg.DagsterRunStatus.STARTED,
        tags={HOST_TAG: host, PID_TAG: str(pid)},
    )
    instance.add_run(run)
    instance.event_log_storage.claim_concurrency_slot("source_db", run.run_id, "transitions")
    return run.run_id


def slot_holders(instance: dg.DagsterInstance) -> set[str]:
    info = instance.event_log_storage.get_concurrency_info("source_db")
    return {slot.run_id for slot in info.claimed_slots}


def test_killed_runs_are_failed_and_their_pool_slots_freed():
    with dg.instance_for_test() as instance:
        instance.event_log_storage.set_concurrency_slots("source_db", 2)
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        here = socket.gethostname()
        killed = started_run(instance, dead.pid, here)
        alive = started_run(instance, os.getpid(), here)
        elsewhere = started_run(instance, dead.pid, "another-host")
        # The pool has 2 slots: the killed run and the live one hold them, the third waits.
        assert slot_holders(instance) == {killed, alive}

        assert reap_orphaned_runs(instance) == [killed]
        assert instance.get_run_by_id(killed).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(alive).status == dg.DagsterRunStatus.STARTED
        assert instance.get_run_by_id(elsewhere).status == dg.DagsterRunStatus.STARTED
        assert slot_holders(instance) == {alive}
        assert reap_orphaned_runs(instance) == []
