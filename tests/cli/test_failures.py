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
