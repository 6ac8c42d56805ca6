"""The state directory: its lock, its listing, its quarantine."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
from typing import TYPE_CHECKING

from ..._errors import (
    StateLockedError,
)
from ._format import _SEGMENT_RE, _SNAPSHOT_RE, _TEMP_SUFFIX, LOCK_NAME, QUARANTINE

if TYPE_CHECKING:
    from .._files import Files

__all__ = ["lock_directory", "unlock_directory"]

logger = logging.getLogger(__name__)

# -- the lock ----------------------------------------------------------------


def lock_directory(files: Files, directory: str) -> int:
    """Take the directory's lock (flock on ``LOCK``) and return its fd.

    Raises:
        StateLockedError: Another process, or another open state of this
            process, holds it.
    """
    files.makedirs(directory)
    path = os.path.join(directory, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        finally:
            os.close(fd)
        msg = f"{directory} is in use by another state (pid {holder}): one writer"
        raise StateLockedError(msg) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def unlock_directory(fd: int) -> None:
    """Release the lock taken by :func:`lock_directory`."""
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


# -- recovery ----------------------------------------------------------------


def _list(files: Files, directory: str) -> tuple[list[int], list[int], list[str]]:
    snapshots: list[int] = []
    segments: list[int] = []
    temps: list[str] = []
    for name in files.listdir(directory):
        if name.endswith(_TEMP_SUFFIX):
            temps.append(name)
        elif m := _SNAPSHOT_RE.fullmatch(name):
            snapshots.append(int(m.group(1)))
        elif m := _SEGMENT_RE.fullmatch(name):
            segments.append(int(m.group(1)))
    return sorted(snapshots), sorted(segments), temps


def _quarantine(files: Files, directory: str, name: str, *, move: bool) -> None:
    """Keep a damaged file aside in ``quarantine/`` (moved, or copied)."""
    qdir = os.path.join(directory, QUARANTINE)
    files.makedirs(qdir)
    target = os.path.join(qdir, name)
    n = 1
    while files.exists(target):
        n += 1
        target = os.path.join(qdir, f"{name}.{n}")
    source = os.path.join(directory, name)
    if move:
        files.replace(source, target)
        files.fsync_dir(directory)
    else:
        shutil.copyfile(source, target)
    files.fsync_dir(qdir)
