"""How a step retries a database briefly away (a failover, a restart): it asks Dagster for each
retry itself (RetryRequested), spaced by exponential backoff. The steps have no Dagster retry
policy on purpose: Dagster turns an interrupt of a step that has one into a retry, so Ctrl-C
during an in-process run ran the step again instead of stopping the command.

The day step retries its source within a budget (TAGFLOW_SOURCE_RETRY_BUDGET_S, counted from
the step's first failure), so a source that went away fails its run in bounded time; a source
that refuses tagflow (credentials, an unknown database) is not retried at all: no retry can fix
it. Any other error fails the step at once."""

from __future__ import annotations

import time

import dagster as dg

from tagflow.errors import SourceRefused, SourceUnavailable, StateUnavailable

RETRY_DELAY_S = 5
MAX_RETRIES = 3


def next_retry_delay_s(retry_number: int) -> float:
    """The wait before the next attempt after attempt `retry_number` (0: the first) failed:
    delay · (2^n − 1) for the n-th retry (5, 15, 35 s)."""
    return RETRY_DELAY_S * (2 ** (retry_number + 1) - 1)


def source_lost(
    context: dg.AssetExecutionContext, error: SourceUnavailable, budget_s: float
) -> BaseException:
    """What the step raises (`raise`, not `raise … from`) for `error`: a retry while the budget
    allows another attempt, else a Failure that is not retried; both caused by `error`."""
    spent = _seconds_since_first_failure(context)
    retry_number = context.retry_number
    if (
        not isinstance(error, SourceRefused)
        and retry_number < MAX_RETRIES
        and spent + next_retry_delay_s(retry_number) <= budget_s
    ):
        return _retry(error, retry_number)
    if isinstance(error, SourceRefused):
        description = str(error)
    else:
        description = f"{error} (gave up after {spent:.0f} s of retries)"
    return _failure(error, description)


def state_lost(error: StateUnavailable, retry_number: int) -> BaseException:
    """What the annotations export raises for `error`: a retry, MAX_RETRIES times, then a
    Failure that is not retried; both caused by `error`."""
    if retry_number < MAX_RETRIES:
        return _retry(error, retry_number)
    return _failure(error, f"{error} (gave up after {MAX_RETRIES} retries)")


def _retry(error: Exception, retry_number: int) -> dg.RetryRequested:
    retry = dg.RetryRequested(
        max_retries=MAX_RETRIES, seconds_to_wait=next_retry_delay_s(retry_number)
    )
    retry.__cause__ = error  # the event log's trace ends in the database's error
    return retry


def _failure(error: Exception, description: str) -> dg.Failure:
    failure = dg.Failure(
        description=description,
        metadata={"error": type(error).__name__},
        allow_retries=False,
    )
    failure.__cause__ = error
    return failure


def _seconds_since_first_failure(context: dg.AssetExecutionContext) -> float:
    """Seconds since this step of this run first failed and was put up for retry (0 on the
    first failure). Read from the run's event log, which every executor's attempts share."""
    step_key = context.op_execution_context.get_step_execution_context().step.key
    retries = context.instance.all_logs(
        context.run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY
    )
    times = [record.timestamp for record in retries if record.step_key == step_key]
    return max(0.0, time.time() - min(times)) if times else 0.0
