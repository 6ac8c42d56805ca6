"""A recorded-I/O crash model: every file operation logged, any crash rebuilt.

:class:`RecordingFiles` performs each operation for real and logs it.
:class:`Disk` replays a prefix of that log into a model of what a crash at
that moment can leave on disk, under the rules POSIX and ext4 give:

* file data is durable only once the file was fsynced (our ``truncate``
  fsyncs); until then any subset of its writes may be on disk, in any order
  (a later write without an earlier one leaves zeros in between), and the
  last may be torn;
* a directory entry (create, rename, unlink) is durable only once its
  directory was fsynced; until then each one may independently be lost.

:meth:`Disk.image` writes one such disk state into a real directory, in one of
four ways: only what was synced, everything, a random subset of the unsynced
operations (reordered), or that with the last unsynced append torn.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

from stateward.actors._files import Files

if TYPE_CHECKING:
    import random
    from pathlib import Path

Mode = Literal["synced", "all", "subset", "torn"]
MODES: tuple[Mode, ...] = ("synced", "all", "subset", "torn")

Op = tuple[object, ...]


class RecordingFiles(Files):
    """Real file operations, each one logged (paths relative to *root*)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.log: list[Op] = []
        self._fds: dict[int, tuple[str, bool]] = {}  # fd -> (path, append)
        self._positions: dict[int, int] = {}

    def _rel(self, path: str) -> str:
        return os.path.relpath(os.path.abspath(path), self.root)

    def makedirs(self, directory: str) -> None:
        if os.path.isdir(directory):
            return
        parent = os.path.dirname(os.path.abspath(directory))
        self.makedirs(parent)
        os.mkdir(directory, 0o700)
        self.log.append(("mkdir", self._rel(directory)))
        self.fsync_dir(parent)

    def create(self, path: str) -> int:
        fd = super().create(path)
        self._fds[fd] = (self._rel(path), False)
        self._positions[fd] = 0
        self.log.append(("create", self._rel(path)))
        return fd

    def open_append(self, path: str) -> int:
        fd = super().open_append(path)
        self._fds[fd] = (self._rel(path), True)
        return fd

    def seek(self, fd: int, offset: int) -> None:
        super().seek(fd, offset)
        self._positions[fd] = offset

    def write(self, fd: int, data: bytes) -> None:
        path, append = self._fds[fd]
        offset = os.fstat(fd).st_size if append else self._positions[fd]
        super().write(fd, data)
        self._positions[fd] = offset + len(data)
        self.log.append(("write", path, offset, bytes(data)))

    def fsync(self, fd: int) -> None:
        super().fsync(fd)
        if fd in self._fds:  # (checkpoint files opened elsewhere are not ours)
            self.log.append(("fsync", self._fds[fd][0]))

    def close(self, fd: int) -> None:
        super().close(fd)
        self._fds.pop(fd, None)
        self._positions.pop(fd, None)

    def truncate(self, path: str, size: int) -> None:
        super().truncate(path, size)
        self.log.append(("truncate", self._rel(path), size))  # fsynced by Files

    def replace(self, source: str, target: str) -> None:
        super().replace(source, target)
        self.log.append(("replace", self._rel(source), self._rel(target)))

    def unlink(self, path: str) -> None:
        super().unlink(path)
        self.log.append(("unlink", self._rel(path)))

    def fsync_dir(self, directory: str) -> None:
        super().fsync_dir(directory)
        rel = self._rel(directory)
        if not rel.startswith(".."):
            self.log.append(("fsync_dir", rel))


class _Inode:
    __slots__ = ("durable", "pending")

    def __init__(self) -> None:
        self.durable = b""  # content as of the last fsync
        self.pending: list[tuple[int, bytes]] = []  # writes since then

    def current(self) -> bytes:
        return _apply(self.durable, self.pending)


def _apply(base: bytes, writes: list[tuple[int, bytes]]) -> bytes:
    data = bytearray(base)
    for offset, chunk in writes:
        end = offset + len(chunk)
        if len(data) < end:
            data.extend(b"\0" * (end - len(data)))
        data[offset:end] = chunk
    return bytes(data)


class Disk:
    """The disk after the first *upto* operations of *log*, as a crash sees it."""

    def __init__(self, log: list[Op], upto: int) -> None:
        self.inodes: list[_Inode] = []
        self.live: dict[str, int] = {}  # path -> inode, as the process saw it
        self.durable: dict[str, int] = {}  # path -> inode, after dir fsyncs
        self.dirs_live: set[str] = {"."}
        self.dirs_durable: set[str] = {"."}
        self.dir_ops: list[Op] = []  # entry changes not yet made durable
        for op in log[:upto]:
            self.step(op)

    def step(self, op: Op) -> None:
        """Apply one more logged operation."""
        kind = op[0]
        if kind == "mkdir":
            self.dirs_live.add(str(op[1]))
            self.dir_ops.append(op)
        elif kind == "create":
            self.inodes.append(_Inode())
            self.live[str(op[1])] = len(self.inodes) - 1
            self.dir_ops.append((*op, len(self.inodes) - 1))
        elif kind == "write":
            _, path, offset, data = op
            self.inodes[self.live[str(path)]].pending.append((int(offset), data))  # type: ignore[call-overload, arg-type]
        elif kind == "fsync":
            inode = self.inodes[self.live[str(op[1])]]
            inode.durable, inode.pending = inode.current(), []
        elif kind == "truncate":
            inode = self.inodes[self.live[str(op[1])]]
            inode.durable, inode.pending = inode.current()[: int(op[2])], []  # type: ignore[call-overload]
        elif kind == "replace":
            self.live[str(op[2])] = self.live.pop(str(op[1]))
            self.dir_ops.append(op)
        elif kind == "unlink":
            del self.live[str(op[1])]
            self.dir_ops.append(op)
        elif kind == "fsync_dir":
            directory = str(op[1])
            keep: list[Op] = []
            for pending in self.dir_ops:
                if _parent(pending) == directory:
                    self._apply_dir_op(self.durable, self.dirs_durable, pending)
                else:
                    keep.append(pending)
            self.dir_ops = keep
        else:  # pragma: no cover - a new kind of operation must be modelled
            msg = f"unmodelled operation {op!r}"
            raise AssertionError(msg)

    @staticmethod
    def _apply_dir_op(entries: dict[str, int], dirs: set[str], op: Op) -> None:
        kind = op[0]
        if kind == "mkdir":
            dirs.add(str(op[1]))
        elif kind == "create":
            entries[str(op[1])] = int(op[2])  # type: ignore[call-overload]
        elif kind == "replace":
            if str(op[1]) in entries:  # its create may have been lost
                entries[str(op[2])] = entries.pop(str(op[1]))
        elif kind == "unlink":
            entries.pop(str(op[1]), None)

    def unsynced(self) -> int:
        """How many operations a crash now could lose."""
        return len(self.dir_ops) + sum(len(i.pending) for i in self.inodes)

    def image(self, target: Path, mode: Mode, rng: random.Random) -> None:
        """Write the disk state of *mode* under *target* (an empty directory)."""
        if mode == "all":
            entries, dirs = dict(self.live), set(self.dirs_live)
            contents = {n: i.current() for n, i in enumerate(self.inodes)}
        else:
            entries, dirs = dict(self.durable), set(self.dirs_durable)
            if mode != "synced":
                for op in self.dir_ops:  # each unsynced entry change kept or lost
                    if rng.random() < 0.5:
                        self._apply_dir_op(entries, dirs, op)
            contents = {
                n: self._content(inode, mode, rng)
                for n, inode in enumerate(self.inodes)
            }
        for directory in sorted(dirs, key=len):
            if all(p in dirs for p in _ancestors(directory)):
                (target / directory).mkdir(parents=True, exist_ok=True)
        for path, inode in entries.items():
            parent = os.path.dirname(path) or "."
            if parent in dirs and all(p in dirs for p in _ancestors(parent)):
                (target / path).write_bytes(contents[inode])

    @staticmethod
    def _content(inode: _Inode, mode: Mode, rng: random.Random) -> bytes:
        if mode == "synced" or not inode.pending:
            return inode.durable
        # Any subset may have reached the disk, whatever the order they were
        # issued in: a later write without an earlier one leaves a hole.
        kept = [w for w in inode.pending if rng.random() < 0.5]
        if mode == "torn" and kept:
            offset, chunk = max(kept, key=lambda w: w[0] + len(w[1]))
            cut = rng.randrange(len(chunk) + 1)
            tail = (
                b"\0" * (len(chunk) - cut)
                if rng.random() < 0.5
                else rng.randbytes(len(chunk) - cut)
            )
            kept[kept.index((offset, chunk))] = (offset, chunk[:cut] + tail)
        return _apply(inode.durable, kept)


def _parent(op: Op) -> str:
    path = str(op[2] if op[0] == "replace" else op[1])
    return os.path.dirname(path) or "."


def _ancestors(directory: str) -> list[str]:
    out = []
    while directory not in (".", ""):
        directory = os.path.dirname(directory) or "."
        out.append(directory)
    return out
