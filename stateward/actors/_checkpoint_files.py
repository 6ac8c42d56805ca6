"""The files of a checkpoint: names, the manifest, and reading one back.

What :mod:`stateward.actors.checkpoints` writes and reads, apart from the
saving and loading themselves (:mod:`._checkpoint_disk`): the layout of a
checkpoint directory, its manifest, what a checkpointed object offers
(:class:`Checkpointable`), the lock that lets one saver in at a time, and
the checks a checkpoint passes before anything is restored from it.
Blocking: worker threads only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
from typing import TYPE_CHECKING, Final, Protocol, final, runtime_checkable

import attrs

from .._errors import CheckpointError, InvalidActionError
from ._files import Files, open_regular
from ._store_files import JsonSerializer
from .persistence._sliced_json import loads_in_slices

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["CheckpointInfo", "Checkpointable"]

FORMAT: Final = "stateward-checkpoint/1"
MANIFEST: Final = "MANIFEST.json"
TREE: Final = "state.json"
OBJECTS: Final = "objects"
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_PARTIAL: Final = ".partial-"
_DELETING: Final = ".deleting-"
_STRICT: Final = JsonSerializer()
_LOCK: Final = ".lock"
_SEQUENCE: Final = ".sequence"  # the last sequence given


@runtime_checkable
class Checkpointable(Protocol):
    """An object that saves itself to, and restores itself from, a path.

    *path* does not exist when ``save_state`` is called: the object creates it
    (a file, or a directory of files). Both run in a worker thread.
    """

    def save_state(self, path: Path) -> None:
        """Write this object's state at *path*."""

    def load_state(self, path: Path) -> None:
        """Restore this object's state from *path*."""


@final
@attrs.frozen
class CheckpointInfo:
    """One complete checkpoint, as its manifest describes it."""

    path: Path
    """The checkpoint's directory."""
    revision: int
    """The state tree's revision saved in it."""
    created: str
    """When it was saved: UTC, ISO 8601 (for people; order is by sequence)."""
    objects: tuple[str, ...]
    """The names of the objects saved in it."""
    sequence: int = 0
    """Its place in the directory: one more than the newest before it. Order
    and retention follow it, never the clock (which may step back)."""
    empty: tuple[str, ...] = ()
    """Objects whose ``save_state`` wrote nothing (stateless so far)."""


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        reason = (
            "must be 1-128 characters of letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit (got {name!r})"
        )
        raise InvalidActionError(what, reason)
    return name


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """Hold ``<directory>/.lock`` (flock): one saver at a time, across processes.

    Blocking: a second process's save waits for the first one's to end.
    """
    fd = open_regular(str(directory / _LOCK), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def _exists(final: Path) -> FileExistsError:
    msg = "a checkpoint of this name exists: never overwritten"
    return FileExistsError(errno.EEXIST, msg, str(final))


def _write_file(files: Files, path: Path, data: bytes) -> None:
    fd = files.create(str(path))
    try:
        files.write(fd, data)
    finally:
        files.close(fd)


def _fsync_tree(files: Files, top: Path) -> None:
    """Fsync every file and directory under *top* (what objects wrote too)."""
    for dirpath, _dirnames, filenames in os.walk(top):
        for filename in filenames:
            fd = os.open(os.path.join(dirpath, filename), os.O_RDONLY)
            try:
                files.fsync(fd)
            finally:
                files.close(fd)
        files.fsync_dir(dirpath)


def _read_manifest(where: Path) -> CheckpointInfo:
    try:
        manifest = json.loads((where / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise CheckpointError(str(where), f"no {MANIFEST}: not a checkpoint") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise CheckpointError(str(where), f"{MANIFEST} cannot be read: {exc}") from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or type(manifest.get("revision")) is not int
        or not isinstance(manifest.get("created"), str)
        or not isinstance(manifest.get("objects"), list)
        or not all(
            isinstance(n, str) and _NAME_RE.fullmatch(n) for n in manifest["objects"]
        )
        or type(manifest.get("sequence", 0)) is not int
        or not isinstance(manifest.get("empty", []), list)
        or not all(n in manifest["objects"] for n in manifest.get("empty", []))
    ):
        raise CheckpointError(str(where), f"{MANIFEST} is not a {FORMAT} manifest")
    return CheckpointInfo(
        where,
        manifest["revision"],
        manifest["created"],
        tuple(manifest["objects"]),
        manifest.get("sequence", 0),  # checkpoints saved before sequences: first
        tuple(manifest.get("empty", [])),
    )


def _read_checkpoint(where: Path) -> tuple[CheckpointInfo, object]:
    """The manifest and the decoded tree of the checkpoint at *where*.

    The tree is strict JSON, not yet checked as a value: the ``Set`` that
    loads it checks and copies it, once.
    """
    if not where.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such checkpoint", str(where))
    info = _read_manifest(where)
    try:
        tree = loads_in_slices((where / TREE).read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        raise CheckpointError(str(where), f"{TREE} cannot be read: {exc}") from None
    for obj_name in info.objects:
        if obj_name not in info.empty and not (where / OBJECTS / obj_name).exists():
            reason = f"the manifest names {obj_name!r}, but it holds nothing for it"
            raise CheckpointError(str(where), reason)
    return info, tree
