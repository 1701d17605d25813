"""Removal of the staged files that killed runs leave behind (`.part-0.parquet.<uuid>.tmp`, see
partition_writer): a file is removed only when its name is exactly a staged file's and it has
not been written for `max_age_s` seconds, so a running write (which touches its file with every
chunk) is never swept. The walk never follows a symbolic link, never removes anything else, and
reports counts; the log names each removed file relative to the store root.

A local root stages beside each partition, so its tree is walked (one tenant's folders, or all);
an object-store root stages in this machine's temp folder, which is swept instead. Every sweep
also removes the stale spill folders of killed day reads (source.day_stream) from the temp
folder: one holds up to a day's rows, and a live one lasts a day's read.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass

from tagflow.io_managers.dataset_store import TENANT_PREFIX, DatasetStore, tenant_folder
from tagflow.io_managers.partition_writer import TEMP_PREFIX, TEMP_SUFFIX
from tagflow.names import validate_tenant_name
from tagflow.source.day_stream import SPILL_PREFIX

log = logging.getLogger(__name__)

# Exactly the names PartitionWriter.staged_beside gives: prefix, the target's name, a uuid4 hex.
STAGED_NAME = re.compile(
    re.escape(TEMP_PREFIX) + r"[A-Za-z0-9_.=-]+\.parquet\.[0-9a-f]{32}" + re.escape(TEMP_SUFFIX)
)
# Exactly the names tempfile.mkdtemp gives a spill folder: the prefix and 8 random characters.
SPILL_NAME = re.compile(re.escape(SPILL_PREFIX) + r"[a-z0-9_]{8}")
# Folders below the root that can hold a staged file: {dataset}/tenant=T/date=D, and a few more
# for other layouts under the root (month copies: _compacted/{dataset}/tenant=T/month=M).
MAX_DEPTH = 6
_OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


@dataclass
class SweepReport:
    """What one sweep did: temp files removed (and their bytes), temp files kept because they
    were written recently, and temp files it could not remove."""

    removed: int = 0
    removed_bytes: int = 0
    kept_fresh: int = 0
    failed: int = 0
    spill_folders_removed: int = 0

    def __str__(self) -> str:
        spills = (
            f"; {self.spill_folders_removed} stale spill folder(s) of killed reads removed"
            if self.spill_folders_removed
            else ""
        )
        return (
            f"{self.removed} stale temp file(s) removed ({self.removed_bytes} bytes), "
            f"{self.kept_fresh} recent one(s) kept, {self.failed} could not be removed{spills}"
        )


def sweep_stale_temp_files(
    store: DatasetStore, max_age_s: float, tenant: str | None = None, now: float | None = None
) -> SweepReport:
    """Remove the staged files under `store` (of `tenant`'s folders only, if given) last written
    more than `max_age_s` seconds before `now`; see the module docstring."""
    if max_age_s <= 0:
        raise ValueError("max_age_s must be positive: a sweep must never race a running write")
    if tenant is not None:
        validate_tenant_name(tenant)
    cutoff = (time.time() if now is None else now) - max_age_s
    report = SweepReport()
    if store.root.protocol in ("", "file", "local"):
        _sweep_tree(store.root.path, tenant, cutoff, report)
    else:
        _sweep_folder_at(tempfile.gettempdir(), cutoff, report)
    _sweep_spills(tempfile.gettempdir(), cutoff, report)
    if report.removed or report.failed or report.spill_folders_removed:
        log.info("store sweep: %s", report)
    return report


def _sweep_spills(path: str, cutoff: float, report: SweepReport) -> None:
    """Remove the spill folders in `path` that nothing has changed since `cutoff` (a kill -9
    skips a read's own removal of its folder)."""
    with os.scandir(path) as entries:
        listed = list(entries)
    for entry in listed:
        if not SPILL_NAME.fullmatch(entry.name) or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                continue
        except FileNotFoundError:  # removed meanwhile by its own read
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        report.spill_folders_removed += 1


def _sweep_tree(root: str, tenant: str | None, cutoff: float, report: SweepReport) -> None:
    try:
        # The root itself may be a link (the operator chose it); nothing below it is followed.
        folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        _sweep(folder, "", 0, tenant, cutoff, report)
    finally:
        os.close(folder)


def _sweep_folder_at(path: str, cutoff: float, report: SweepReport) -> None:
    try:
        folder = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        _sweep(folder, "", MAX_DEPTH, None, cutoff, report)
    finally:
        os.close(folder)


def _sweep(
    folder: int, relative: str, depth: int, tenant: str | None, cutoff: float, report: SweepReport
) -> None:
    """Sweep the open folder `folder` and, above MAX_DEPTH, its subfolders (opened relative to
    it with O_NOFOLLOW, so a folder swapped for a link while listed is not entered)."""
    with os.scandir(folder) as entries:
        listed = list(entries)
    for entry in listed:
        name = entry.name
        if entry.is_dir(follow_symlinks=False):
            if depth >= MAX_DEPTH or not _wanted(name, tenant):
                continue
            try:
                child = os.open(name, _OPEN_FOLDER, dir_fd=folder)
            except OSError:  # gone, or replaced by a link, since it was listed
                continue
            try:
                _sweep(child, f"{relative}{name}/", depth + 1, tenant, cutoff, report)
            finally:
                os.close(child)
        elif STAGED_NAME.fullmatch(name) and entry.is_file(follow_symlinks=False):
            _remove_if_stale(folder, relative + name, name, cutoff, report)


def _wanted(folder_name: str, tenant: str | None) -> bool:
    """Whether a sweep of `tenant` (all if None) enters the folder."""
    if tenant is None or not folder_name.startswith(TENANT_PREFIX):
        return True
    return folder_name == tenant_folder(tenant)


def _remove_if_stale(
    folder: int, relative: str, name: str, cutoff: float, report: SweepReport
) -> None:
    try:
        stat = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:  # published or discarded since it was listed
        return
    if stat.st_mtime > cutoff:
        report.kept_fresh += 1
        return
    try:
        # Unlinks this name only: were it swapped for a link meanwhile, the link goes, not its
        # target; were it published meanwhile, the name is gone and the partition untouched.
        os.unlink(name, dir_fd=folder)
    except FileNotFoundError:
        return
    except OSError as error:
        report.failed += 1
        log.warning("could not remove stale temp file %s (%s)", relative, error.strerror)
        return
    report.removed += 1
    report.removed_bytes += stat.st_size
    log.info("removed stale temp file %s (%d bytes)", relative, stat.st_size)
