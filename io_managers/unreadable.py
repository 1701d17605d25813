"""What a partition file that exists but cannot be read (zero bytes, truncated, corrupted)
becomes for its reader: a CorruptPartition naming the dataset, tenant and day, never the file,
with Arrow's own error logged for the operator. A missing file stays FileNotFoundError, which
the store turns into MissingPartition."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import pyarrow as pa

from tagflow.errors import CorruptPartition, TagflowError

log = logging.getLogger(__name__)

# What Arrow and the filesystem raise for a file they cannot read.
UNREADABLE: tuple[type[Exception], ...] = (OSError, pa.ArrowException)


def corrupt_partition(
    dataset: str, tenant: str, day: date | None, error: BaseException | None = None
) -> CorruptPartition:
    """The error of an unreadable partition, logged (with Arrow's reason) once it is made."""
    where = f"{dataset} of tenant {tenant!r}" + (f" on {day.isoformat()}" if day else "")
    if error is not None:
        # The operator's log may name the file's folder; the caller's message never does.
        log.warning("unreadable partition: %s (%s: %s)", where, type(error).__name__, error)
    rewrite = "that day" if day is not None else "the tenant (any day rewrites its tags)"
    return CorruptPartition(
        f"the stored {where} cannot be read (the file is truncated or corrupted); "
        f"materialise {rewrite} again to replace it",
        dataset,
        tenant,
        day,
    )


@contextmanager
def corrupt_if_unreadable(dataset: str, tenant: str, day: date | None) -> Iterator[None]:
    """Inside the block, an unreadable file raises CorruptPartition; FileNotFoundError and
    tagflow's own errors pass as they are."""
    try:
        yield
    except (FileNotFoundError, TagflowError):
        raise
    except UNREADABLE as error:
        raise corrupt_partition(dataset, tenant, day, error) from None
