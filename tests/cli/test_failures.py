"""Why a run failed, read back from its Dagster event log: an error tagflow does not know by
name is reported by what it is, not by the wrapper Dagster puts around it."""

from __future__ import annotations

import dagster as dg

from tagflow.cli.failures import run_failure


@dg.asset
def broken() -> None:
    raise ValueError("the tenant's colour is plaid")


def test_an_unknown_error_is_named_by_the_error_dagster_wrapped() -> None:
    with dg.instance_for_test() as instance:
        result = dg.materialize([broken], instance=instance, raise_on_error=False)
        failure = run_failure(instance, result.run_id)
    assert failure.kind == "failed" and not failure.stops
    assert failure.reason == "ValueError: the tenant's colour is plaid"
    assert "DagsterExecutionStepExecutionError" in failure.trace


@dg.resource
def interrupted_as_it_opens(_) -> None:
    # Ctrl-C while the run sets up its resources, outside every step: Dagster records no step
    # failure, only the run's (a fresh-clone CI saw it as a plain failure, and the backfill
    # went on with its next days).
    raise KeyboardInterrupt


@dg.op(required_resource_keys={"opened"})
def needs_it() -> None:
    pass


@dg.job(resource_defs={"opened": interrupted_as_it_opens})
def interrupted_outside_its_steps() -> None:
    needs_it()


def test_ctrl_c_outside_every_step_is_an_interruption() -> None:
    with dg.instance_for_test() as instance:
        result = interrupted_outside_its_steps.execute_in_process(
            instance=instance, raise_on_error=False
        )
        steps_failed = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        failure = run_failure(instance, result.run_id)
    assert not result.success and steps_failed == []
    assert failure.interrupted
