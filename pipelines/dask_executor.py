"""The dask executor: each step of a launched run becomes a task on a running dask.distributed
scheduler (TAGFLOW_EXECUTOR=dask, TAGFLOW_DASK_ADDRESS=tcp://host:8786).

Dagster's own step orchestration (StepDelegatingExecutor: step order, skips after a failure or
a failed blocking check, retries, the `source_db` pool's slots) stays in the run's process; a
worker runs one step as `python -m dagster api execute_step` in a child process, which writes
the step's events to the instance, where the run's process reads them back. Workers therefore
need the tagflow package, the run's TAGFLOW_* environment, and instance storage and a store
root that they can reach (PostgreSQL and s3:// once workers are on other hosts).

dagster-dask 0.29's executor is not used: with dask >= 2024.12 its `client.submit` fails on
every run (dask walks the DagsterRun tuple into a Dagster @record that forbids iteration); its
task keys lack the run id, so two runs of the job on one scheduler share results; and it
starts every step whatever happened upstream, so a failed blocking check does not stop the
assets below it.
"""

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import suppress

import dagster as dg
from distributed import Client, Event, Future, wait

from tagflow.pipelines.dagster_internals import (
    CheckStepHealthResult,
    DagsterEvent,
    RetryMode,
    StepDelegatingExecutor,
    StepHandler,
    StepHandlerContext,
)

# How often a worker looks whether the run asked to stop its step.
STOP_POLL_S = 1.0
# How long the run waits, once its steps have reported, for their processes to exit.
EXIT_WAIT_S = 30.0


def run_step(step_env: dict[str, str], stop_event: str) -> None:
    """Run one step on a dask worker, in a child process like the multiprocess executor's;
    SIGTERM it when the run sets `stop_event` (Dagster reports the step as interrupted)."""
    stop = Event(stop_event)
    command = [sys.executable, "-m", "dagster", "api", "execute_step"]
    with subprocess.Popen(command, env={**os.environ, **step_env}) as process:
        while process.poll() is None:
            if stop.wait(STOP_POLL_S):
                process.terminate()
                process.wait()
                stop.clear()  # a set event stays on the scheduler until cleared
    if process.returncode != 0:
        # The step's own failures are events with exit status 0: this is a crash (OOM kill,
        # import error), which the run sees through check_step_health.
        raise RuntimeError(f"the step process exited with status {process.returncode}")


class DaskStepHandler(StepHandler):
    """Launches, watches and stops the steps of one run as tasks on a dask scheduler."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._client: Client | None = None
        self._tasks: dict[str, tuple[Future, str]] = {}  # step key -> (task, its stop event)

    @property
    def name(self) -> str:
        return "DaskStepHandler"

    def _connected(self) -> Client:
        if self._client is None:
            self._client = Client(self._address, set_as_default=False)
        return self._client

    def close(self) -> None:
        if self._client is None:
            return
        # A step reports its end just before its process exits; a task released while it runs
        # is forgotten by the scheduler, with any crash at exit.
        with suppress(TimeoutError):
            wait([task for task, _ in self._tasks.values()], timeout=EXIT_WAIT_S)
        self._client.close()
        self._client = None

    def launch_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        args = step_handler_context.execute_step_args
        (step_key,) = args.step_keys_to_execute or ()
        # Dask treats equal keys as one task: the run id keeps concurrent runs apart, the
        # random suffix a retry from its first attempt.
        key = f"tagflow-{args.run_id}-{step_key}-{uuid.uuid4().hex[:8]}"
        step_env = {item["name"]: item["value"] for item in args.get_command_env()}
        yield DagsterEvent.step_worker_starting(
            step_handler_context.get_step_context(step_key),
            message=f'Submitting step "{step_key}" to the dask scheduler at {self._address}.',
            metadata={"dask_key": key},
        )
        stop_event = f"{key}-stop"
        task = self._connected().submit(run_step, step_env, stop_event, key=key, pure=False)
        self._tasks[step_key] = (task, stop_event)

    def check_step_health(self, step_handler_context: StepHandlerContext) -> CheckStepHealthResult:
        (step_key,) = step_handler_context.execute_step_args.step_keys_to_execute or ()
        if step_key not in self._tasks:
            return CheckStepHealthResult.unhealthy("not launched by this run's process")
        task, _ = self._tasks[step_key]
        if task.status == "error":
            return CheckStepHealthResult.unhealthy(f"dask task failed: {task.exception()!r}")
        if task.status == "cancelled":
            return CheckStepHealthResult.unhealthy("dask task cancelled")
        return CheckStepHealthResult.healthy()

    def terminate_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        (step_key,) = step_handler_context.execute_step_args.step_keys_to_execute or ()
        if step_key in self._tasks:
            task, stop_event = self._tasks.pop(step_key)
            # A queued task is cancelled; a running one stops its step process.
            Event(stop_event, client=self._connected()).set()
            task.cancel()
        yield from ()


class DaskExecutor(StepDelegatingExecutor):
    """StepDelegatingExecutor over a DaskStepHandler that disconnects when the run ends."""

    def __init__(self, handler: DaskStepHandler, max_concurrent: int | None) -> None:
        super().__init__(handler, retries=RetryMode.ENABLED, max_concurrent=max_concurrent)
        self._handler = handler

    def execute(self, plan_context, execution_plan) -> Iterator[DagsterEvent]:
        try:
            yield from super().execute(plan_context, execution_plan)
        finally:
            self._handler.close()


@dg.executor(
    name="tagflow_dask",
    config_schema={
        "address": dg.Field(dg.StringSource, description="The scheduler, tcp://host:8786."),
        "max_concurrent": dg.Field(
            dg.Noneable(int), default_value=None, description="Steps of one run at once."
        ),
    },
    requirements=dg.multiple_process_executor_requirements(),
)
def dask_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    config = init_context.executor_config
    address, max_concurrent = config["address"], config["max_concurrent"]
    # The config schema above guarantees these types; Dagster types the config as objects.
    if not isinstance(address, str):
        raise TypeError(f"tagflow_dask's address must be a string, got {address!r}")
    if max_concurrent is not None and not isinstance(max_concurrent, int):
        raise TypeError(f"tagflow_dask's max_concurrent must be an int, got {max_concurrent!r}")
    return DaskExecutor(DaskStepHandler(address), max_concurrent)
