"""How long the day step retries a source it cannot reach. Dagster's retry policy spaces the
attempts; the budget (TAGFLOW_SOURCE_RETRY_BUDGET_S, counted from the step's first failure)
ends them, so a source that went away fails its run in bounded time. A source that refuses
tagflow (credentials, an unknown database) is not retried at all: no retry can fix it."""

from __future__ import annotations

import time

import dagster as dg

from tagflow.errors import SourceRefused, SourceUnavailable

RETRY_DELAY_S = 5
# The source may be briefly away (a failover, a restart): retried with backoff, within budget.
SOURCE_RETRY = dg.RetryPolicy(max_retries=3, delay=RETRY_DELAY_S, backoff=dg.Backoff.EXPONENTIAL)


def next_retry_delay_s(retry_number: int) -> float:
    """The wait before the next attempt after attempt `retry_number` (0: the first) failed:
    Dagster's exponential backoff, delay · (2^n − 1) for the n-th retry."""
    return RETRY_DELAY_S * (2 ** (retry_number + 1) - 1)


def source_lost(
    context: dg.AssetExecutionContext, error: SourceUnavailable, budget_s: float
) -> BaseException:
    """What the step raises (`raise`, not `raise … from`) for `error`: the error itself while
    the budget allows another attempt (the retry policy then retries it), else a Failure that
    no policy retries, caused by `error`."""
    spent = _seconds_since_first_failure(context)
    retry_number = context.retry_number
    if (
        not isinstance(error, SourceRefused)
        and retry_number < SOURCE_RETRY.max_retries
        and spent + next_retry_delay_s(retry_number) <= budget_s
    ):
        return error
    if isinstance(error, SourceRefused):
        description = str(error)
    else:
        description = f"{error} (gave up after {spent:.0f} s of retries)"
    failure = dg.Failure(
        description=description,
        metadata={"error": type(error).__name__},
        allow_retries=False,
    )
    failure.__cause__ = error  # the event log's trace ends in the source's error
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
