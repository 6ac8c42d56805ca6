"""The one small layer every persistent byte goes through.

The journal, the snapshots, recovery and retention call only these methods,
never ``os`` directly, so that tests can record every operation (to build the
disk as a crash would leave it) or inject errors (a failing fsync, a full
disk). Every method is synchronous and blocking: callers run them in a worker
thread, never on the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from typing import TYPE_CHECKING, BinaryIO, Final

from .._errors import CorruptStateError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "Files",
    "crash_point",
    "filesystem_of",
    "open_regular",
    "set_crash_hook",
]

# Never follow a symlink, never block on a FIFO or a device: what is opened is
# checked to be a regular file before a byte is read.
_READ_FLAGS: Final = os.O_RDONLY


def open_regular(
    path: str, flags: int = _READ_FLAGS, mode: int = 0o600, *, follow: bool = False
) -> int:
    """Open *path* without following a symlink and check it is a regular file.

    Returns the fd (its non-blocking flag cleared). A symlink (unless
    *follow*: for a file the user named), a FIFO, a directory or a device is
    refused with :class:`CorruptStateError`, so a planted file can neither
    redirect a write nor hang a read.

    Raises:
        CorruptStateError: *path* is not a regular file.
        FileNotFoundError: *path* does not exist (and *flags* do not create).
    """
    try:
        nofollow = 0 if follow else os.O_NOFOLLOW
        fd = os.open(path, flags | nofollow | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        if (os.path.islink(path) and not follow) or exc.errno in (
            errno.ELOOP,
            errno.EISDIR,
        ):
            raise CorruptStateError(path, _not_regular(path)) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CorruptStateError(path, _not_regular(path))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _not_regular(path: str) -> str:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "not a regular file"
    for test, what in (
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return f"{what}, not a regular file: stateward does not follow or read it"
    return "not a regular file: stateward does not read it"


FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700

_crash_hook: Callable[[str], None] | None = None


def filesystem_of(path: str, mountinfo: str) -> str | None:
    """The type of the filesystem mounted deepest above the absolute *path*.

    *mountinfo* is the text of ``/proc/self/mountinfo``: per mount, its
    fifth field is where it is mounted (with spaces and the like written
    as octal escapes), and the field after the lone ``-`` is its type.
    """
    best: tuple[int, str] | None = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 7 or "-" not in fields[6:]:
            continue
        point = _unescape(fields[4])
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        # The deepest mount point wins; of equal ones, the one mounted last.
        if inside and (best is None or len(point) >= best[0]):
            kind = fields[fields.index("-", 6) + 1 :]
            if kind:
                best = (len(point), kind[0])
    return None if best is None else best[1]


def _unescape(field: str) -> str:
    r"""A mountinfo field with its octal escapes (``\040`` for a space) decoded."""
    return _ESCAPE.sub(lambda m: chr(int(m[1], 8)), field)


_ESCAPE: Final = re.compile(r"\\([0-7]{3})")


def set_crash_hook(hook: Callable[[str], None] | None) -> None:
    """Call *hook(name)* at each named crash point (tests kill the process there)."""
    global _crash_hook
    _crash_hook = hook


def crash_point(name: str) -> None:
    """Mark a point where a crash matters; a no-op unless a test set a hook."""
    if _crash_hook is not None:
        _crash_hook(name)


class Files:
    """Plain POSIX file operations, with the durability steps made explicit."""

    def listdir(self, directory: str) -> list[str]:
        """Return the names in *directory*."""
        return os.listdir(directory)

    def is_regular(self, path: str) -> bool:
        """Tell whether *path* is a regular file (a symlink is not followed)."""
        try:
            return stat.S_ISREG(os.lstat(path).st_mode)
        except FileNotFoundError:
            return False

    def open_read(self, path: str) -> BinaryIO:
        """Open a regular file for reading (see :func:`open_regular`)."""
        return os.fdopen(open_regular(path), "rb")

    def exists(self, path: str) -> bool:
        """Tell whether *path* exists."""
        return os.path.exists(path)

    def makedirs(self, directory: str) -> None:
        """Create *directory* (mode 0700) and any missing parents, durably."""
        if os.path.isdir(directory):
            return
        parent = os.path.dirname(os.path.abspath(directory))
        self.makedirs(parent)
        os.mkdir(directory, DIR_MODE)
        self.fsync_dir(parent)

    def read(self, path: str) -> bytes:
        """Return the whole content of the regular file *path*.

        Raises:
            CorruptStateError: *path* is a symlink, a FIFO, a directory...
        """
        with self.open_read(path) as f:
            return f.read()

    def create(self, path: str) -> int:
        """Create *path* (it must not exist), mode 0600, for writing."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        return os.open(path, flags, FILE_MODE)

    def open_append(self, path: str) -> int:
        """Open an existing *path* for appending."""
        return open_regular(path, os.O_WRONLY | os.O_APPEND)

    def write(self, fd: int, data: bytes) -> None:
        """Write all of *data*: a short ``os.write`` is not a complete write."""
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def seek(self, fd: int, offset: int) -> None:
        """Make the next :meth:`write` to *fd* (not appending) land at *offset*."""
        os.lseek(fd, offset, os.SEEK_SET)

    def free_bytes(self, directory: str) -> int:
        """Bytes an unprivileged writer may still add to *directory*'s filesystem."""
        st = os.statvfs(directory)
        return st.f_bavail * st.f_frsize

    def filesystem(self, directory: str) -> str | None:
        """The type of *directory*'s filesystem (``"ext4"``, ``"btrfs"``...).

        Read from ``/proc/self/mountinfo``: None where there is none (not
        Linux) or it cannot be read.
        """
        try:
            with open(
                "/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape"
            ) as f:
                mountinfo = f.read()
        except OSError:
            return None
        return filesystem_of(os.path.realpath(directory), mountinfo)

    def fsync(self, fd: int) -> None:
        """Make what was written to *fd* durable."""
        os.fsync(fd)

    def close(self, fd: int) -> None:
        """Close *fd*."""
        os.close(fd)

    def truncate(self, path: str, size: int) -> None:
        """Cut *path* to *size* bytes, durably."""
        fd = open_regular(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def replace(self, source: str, target: str) -> None:
        """Atomically rename *source* over *target* (same directory)."""
        os.replace(source, target)

    def unlink(self, path: str) -> None:
        """Remove *path*."""
        os.unlink(path)

    def fsync_dir(self, directory: str) -> None:
        """Make the directory's entries (creates, renames, removals) durable."""
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def write_atomic(self, path: str, *chunks: bytes) -> None:
        """Replace *path* whole, durably (rule R3).

        Temp file beside it, write, fsync, ``os.replace``, fsync of the
        directory: after a crash *path* is the old file or the new one, never
        a mix. On error the temp file is removed and *path* is untouched.
        """
        directory = os.path.dirname(os.path.abspath(path))
        temp = f"{path}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            self.unlink(temp)  # left by an earlier process with this pid
        fd = self.create(temp)
        try:
            try:
                for chunk in chunks:
                    self.write(fd, chunk)
                self.fsync(fd)
            finally:
                self.close(fd)
            crash_point("atomic-temp-synced")
            self.replace(temp, path)
            crash_point("atomic-replaced")
            self.fsync_dir(directory)
        except BaseException:
            with contextlib.suppress(OSError):
                self.unlink(temp)
            raise
