"""A store (or temp folder) that cannot be written: a path that cannot be created, no
permission, a full disk. The step fails at once, in one line without the path (errors never
carry paths): a retry would fail the same way, and so would every later day."""

from __future__ import annotations

from typing import TypeGuard

import dagster as dg

# The `error` metadata the CLI's summary reads the failure's kind from.
STORE_WRITE_FAILED = "StoreWriteFailed"


def is_store_error(error: BaseException) -> TypeGuard[OSError]:
    """An OSError of the file system, not a connection's (a database's errors are mapped to
    tagflow's own before they reach a step)."""
    return isinstance(error, OSError) and not isinstance(error, ConnectionError)


def store_write_failed(error: OSError, what: str) -> dg.Failure:
    """The Failure for `error`, met while writing `what`."""
    reason = error.strerror or type(error).__name__
    return dg.Failure(
        description=f"{what} could not be written ({reason})",
        metadata={"error": STORE_WRITE_FAILED},
        allow_retries=False,
    )
