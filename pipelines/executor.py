"""How the steps of a launched run (UI, schedules, sensors, backfills) are spread: over
processes on the run's host, or over the workers of a dask.distributed cluster.
`execute_in_process` (tagflow materialize, tests) replaces it with the in-process executor."""

from __future__ import annotations

import dagster as dg

from tagflow.errors import InvalidArgument
from tagflow.settings import Settings

EXECUTOR_ENV = Settings.variable("executor")
DASK_ADDRESS_ENV = Settings.variable("dask_address")


def launched_run_executor(settings: Settings) -> dg.ExecutorDefinition:
    """`multiprocess` (the default): each step in its own process, at most max_concurrent at
    once; or `dask`: each step a task on the dask.distributed scheduler at dask_address (at
    most max_concurrent steps of a run at once, see pipelines/dask_executor.py)."""
    if settings.executor == "dask":
        return _dask_executor(settings)
    return dg.multiprocess_executor.configured(
        {"max_concurrent": settings.max_concurrent}, name="tagflow_multiprocess"
    )


def _dask_executor(settings: Settings) -> dg.ExecutorDefinition:
    if not settings.dask_address:
        # A cluster started per run would only re-create the multiprocess executor, slower.
        raise InvalidArgument(
            f"{EXECUTOR_ENV}=dask needs {DASK_ADDRESS_ENV}, the scheduler's address "
            "(tcp://host:8786)"
        )
    try:
        # dask is an optional extra: deployments on the multiprocess executor do without it.
        from tagflow.pipelines.dask_executor import dask_executor
    except ModuleNotFoundError as exc:
        if exc.name not in {"dask", "distributed"}:
            raise
        raise InvalidArgument(
            f"{EXECUTOR_ENV}=dask needs dask.distributed: pip install 'tagflow[production]'"
        ) from exc
    return dask_executor.configured(
        {"address": settings.dask_address, "max_concurrent": settings.max_concurrent},
        name="tagflow_dask",
    )
