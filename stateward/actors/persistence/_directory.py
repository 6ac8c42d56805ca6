"""The state directory: its lock, its listing, its quarantine."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
from typing import TYPE_CHECKING

from ..._errors import CorruptStateError, StateLockedError
from .._files import open_regular
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
    # Never through a symlink, never a FIFO: a planted LOCK cannot make us
    # truncate another file or hang (CorruptStateError instead).
    fd = open_regular(path, os.O_RDWR | os.O_CREAT)
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
    try:  # the holder's pid, for the message of the next one (a full disk fails)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
    except BaseException:
        unlock_directory(fd)  # else the lock stays taken until the process ends
        raise
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
        if not (
            name.endswith(_TEMP_SUFFIX)
            or _SNAPSHOT_RE.fullmatch(name)
            or _SEGMENT_RE.fullmatch(name)
        ):
            continue  # not ours: left alone
        if not files.is_regular(os.path.join(directory, name)):
            # A directory, symlink or FIFO under one of our names: never
            # read, followed or removed; the state opens without it.
            logger.warning("ignoring %s in %s: not a regular file", name, directory)
            continue
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
    if os.path.lexists(qdir) and not stat.S_ISDIR(os.lstat(qdir).st_mode):
        # A symlink (or a file) planted as quarantine/ would send the copy
        # anywhere: refuse instead.
        reason = "is not a directory (a symlink?): nothing is kept aside through it"
        raise CorruptStateError(qdir, reason)
    files.makedirs(qdir)
    target = os.path.join(qdir, name)
    n = 1
    while os.path.lexists(target):  # a dangling symlink counts as taken
        n += 1
        target = os.path.join(qdir, f"{name}.{n}")
    source = os.path.join(directory, name)
    if move:
        files.replace(source, target)  # a rename never follows a symlink
        files.fsync_dir(directory)
    else:
        fd = files.create(target)  # O_EXCL | O_NOFOLLOW: only a new file
        try:
            files.write(fd, files.read(source))
            files.fsync(fd)
        finally:
            files.close(fd)
    files.fsync_dir(qdir)
