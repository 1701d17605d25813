"""The publish id of a tenant-day: one id stamped into the footer of every dataset file of the
day, so that a reader can tell files of one publish from files of two (a republish replaces
the day's files one after another).

The id is a hash of the content of every dataset of the day (the bytes of their row groups),
not a random or time-based one: a rerun over unchanged data writes byte-identical files, and
two publishes that share an id hold the same rows, so reading across them mixes nothing.
"""

from __future__ import annotations

import hashlib

PUBLISH_KEY = b"tagflow.day_publish"


def publish_id(content_digests: dict[str, str]) -> str:
    """The id of a day whose datasets' content hashes are `content_digests` (dataset → hex)."""
    digest = hashlib.sha256()
    for dataset in sorted(content_digests):
        digest.update(f"{dataset}={content_digests[dataset]}\n".encode())
    return digest.hexdigest()[:32]


def publish_of(key_value: dict[bytes, bytes] | None) -> str | None:
    """The publish id in a file's footer metadata; None for a file written without one (a
    month copy, or a day written before ids were stamped)."""
    raw = (key_value or {}).get(PUBLISH_KEY)
    return None if raw is None else raw.decode("ascii", "replace")
