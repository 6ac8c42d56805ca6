"""Snapshots rebuilt from the files, in a new process: the state never pauses.

A snapshot of revision *r* is the tree at *r*. The state directory already
holds everything needed to rebuild it: the previous snapshot and the journal
records after it, up to *r* (recovery does exactly this). A new Python
process, started with ``posix_spawn`` (which shares this process's memory
until the new program runs, instead of copying its page tables: 0.6 ms
against 10-15 ms for a ``fork`` at a million leaves), reads those files,
replays the records up to *r*, serialises the tree and streams the bytes
back through a pipe. The parent writes the snapshot file itself, as for a
forked child (:mod:`._fork`), whose :class:`~._fork.ForkedBody` reads the
pipe here too.

The records are plain tree operations (set, delete, ping), never the user's
code, so the rebuilt tree is the live one at *r* exactly when recovery is
correct, which the recovery tests prove. The cost is where a fork saves:
the process holds its own copy of the tree while it runs, and it reads and
decodes the previous snapshot before it replays.

The child is ``python -c``, given this package's directory, so that it runs
this code whatever its working directory and path; it imports only the
modules it needs (see ``_CODE``).
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from typing import TYPE_CHECKING, Any, Final

from ..._errors import CorruptStateError
from ...tree import Tree
from .._files import Files
from ._directory import _list
from ._fork import ForkedBody
from ._format import dumps_bytes, snapshot_name
from ._segments import replay_records, segments_after
from ._snapshot import read_snapshot

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["can_spawn", "has_room", "rebuild", "spawn"]

_PACKAGE_PARENT: Final = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)
_PROLOGUE: Final = (
    # A Ctrl-C at the terminal reaches the whole process group: the parent
    # decides (it kills this process if it gives up on the snapshot).
    "import os, signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    # Files the parent made inheritable (its own are not) stay the parent's:
    # all but stdio, whose stdout is the pipe.
    "os.closerange(3, max(os.sysconf('SC_OPEN_MAX'), 1 << 16)); "
)
# What the environment would have the new interpreter do beside its job:
# stay interactive after it, reading the terminal (PYTHONINSPECT), or trace
# every allocation of a tree as large as the state's.
_NOT_INHERITED: Final = frozenset(
    {
        "PYTHONINSPECT",
        "PYTHONTRACEMALLOC",
        "PYTHONDEVMODE",
        "PYTHONPROFILEIMPORTTIME",
        "PYTHONMALLOCSTATS",
    }
)
# The process needs a dozen modules of this package. Importing the package
# itself would run its __init__, which loads all of it (the actors, anyio's
# backends, asyncio): 0.17 s of the 0.25 s it took to start. So its three
# enclosing packages are made empty modules that only know their paths.
_CODE: Final = (
    "import sys, types\n"
    "for name in ('stateward', 'stateward.actors', 'stateward.actors.persistence'):\n"
    "    package = sys.modules[name] = types.ModuleType(name)\n"
    "    package.__path__ = [os.path.join(sys.argv[1], *name.split('.'))]\n"
    "from stateward.actors.persistence._compact import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


def rebuild(
    directory: str, revision: int, dumps: Callable[[Any], bytes] = dumps_bytes
) -> bytes:
    """The tree at *revision*, rebuilt from *directory*'s files, encoded.

    Read-only and blocking. Safe beside the live state once the journal
    holds every record up to *revision* (written; later ones may be under
    way): the newest snapshot at or before *revision*, then the records
    after it. *dumps* encodes (default: a snapshot's body).

    Raises:
        CorruptStateError: A file is damaged, or the files do not reach
            *revision*.
        OSError: A file could not be read.
    """
    files = Files()
    snapshots, segments, _ = _list(files, directory)
    base_revision = max((r for r in snapshots if r <= revision), default=None)
    if base_revision is None:
        raise CorruptStateError(directory, f"no snapshot at or before {revision}")
    name = snapshot_name(base_revision)
    base = read_snapshot(files, os.path.join(directory, name), name)
    tree = Tree.adopt(base.root, revision=base.revision)
    for name, segment in segments_after(
        files, directory, segments, base.store_id, base.revision, revision
    ):
        if tree.revision >= revision:
            break
        payloads = segment.payloads[: revision + 1 - segment.first]
        replay_records(tree, segment.first, payloads, name)
    if tree.revision != revision:
        reason = f"the journal reaches revision {tree.revision}, not {revision}"
        raise CorruptStateError(directory, reason)
    return dumps(tree.root)


def main(argv: Sequence[str]) -> int:  # pragma: no cover - runs in the child
    """The child: ``DIRECTORY REVISION [checkpoint]``; the body to stdout, 0.

    With ``checkpoint``, the tree is encoded as a checkpoint's
    ``state.json`` (pretty-printed), not as a snapshot's body.
    """
    directory, revision = argv[0], int(argv[1])
    dumps = dumps_bytes
    if argv[2:] == ["checkpoint"]:
        from .._store_files import JsonSerializer

        dumps = JsonSerializer().dumps
    gc.disable()  # it builds one tree and exits: nothing for a collector
    try:
        body = memoryview(rebuild(directory, revision, dumps))
    except (CorruptStateError, OSError) as exc:
        sys.stderr.write(f"stateward: the tree at {revision} not rebuilt: {exc}\n")
        return 1
    try:
        while body:
            body = body[os.write(1, body) :]
    except BrokenPipeError:  # the parent is gone, or gave up on it
        return 1
    return 0


def can_spawn() -> bool:
    """Whether :func:`spawn` can start this interpreter again.

    Not where ``posix_spawn`` is missing (Windows), nor for an embedded or
    frozen interpreter: ``sys.executable`` empty, or a program not named
    like Python (a server embedding Python names itself, and would be
    started with arguments meant for Python).
    """
    name = os.path.basename(sys.executable or "").lower()
    return (
        hasattr(os, "posix_spawn")
        and name.startswith(("python", "pypy"))
        and not getattr(sys, "frozen", False)
    )


ROOM_FACTOR: Final = 1.5
"""A rebuild is started (``snapshot_child="auto"``) only where the memory
available is at least this many times this process's resident memory: the
new process holds a copy of the tree about that large (617 MB beside a
600 MB state, at a million leaves)."""


def has_room(proc: str = "/proc", cgroups: str = "/sys/fs/cgroup") -> bool:
    """Whether memory allows a second copy of this process's data, about.

    Takes the least of the machine's available memory and what the memory
    cgroups of this process (v1 or v2, at every level up to the root) have
    left under their limits. True where neither can be read (not Linux):
    nothing says otherwise. Blocking, but quick (a few small reads).
    """
    resident = _resident(proc)
    available = _available(proc, cgroups)
    if resident is None or available is None:
        return True
    return available >= ROOM_FACTOR * resident


def _resident(proc: str) -> int | None:
    path = os.path.join(proc, "self", "statm")
    with contextlib.suppress(OSError, ValueError, IndexError), open(path) as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return None


def _read_int(path: str) -> int | None:
    """The number in *path*; None if it is missing, unreadable or "max"."""
    with contextlib.suppress(OSError, ValueError), open(path) as f:
        return int(f.read().strip())
    return None


def _available(proc: str, cgroups: str) -> int | None:
    available = None
    meminfo = os.path.join(proc, "meminfo")
    with contextlib.suppress(OSError, ValueError, IndexError), open(meminfo) as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    if available is None:
        return None
    with contextlib.suppress(OSError, ValueError):
        with open(os.path.join(proc, "self", "cgroup")) as f:
            lines = f.read().splitlines()
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if controllers == "":  # v2: one hierarchy
                base, limit, usage = cgroups, "memory.max", "memory.current"
            elif "memory" in controllers.split(","):  # v1
                base = os.path.join(cgroups, "memory")
                limit, usage = "memory.limit_in_bytes", "memory.usage_in_bytes"
            else:
                continue
            # The limit of any level up to the root applies.
            parts = [p for p in path.split("/") if p]
            for depth in range(len(parts), -1, -1):
                level = os.path.join(base, *parts[:depth])
                cap, used = _read_int(os.path.join(level, limit)), None
                if cap is not None:
                    used = _read_int(os.path.join(level, usage))
                if cap is not None and used is not None:
                    available = min(available, max(0, cap - used))
    return available


def spawn(
    directory: str, revision: int, *, checkpoint: bool = False
) -> ForkedBody | None:
    """Start a process that rebuilds the tree at *revision*; None if it could not.

    It encodes it as a snapshot's body, or with *checkpoint* as a
    checkpoint's ``state.json``. Call it once the journal holds every record
    up to *revision*, and only where :func:`can_spawn`.
    """
    executable = sys.executable
    read_fd, write_fd = os.pipe()
    # (-W ignore: a warning made an error by the environment must not fail
    # it; it has nothing to warn anyone about)
    argv = [executable, "-W", "ignore", "-c", _PROLOGUE + _CODE, _PACKAGE_PARENT]
    argv += [directory, str(revision)] + (["checkpoint"] if checkpoint else [])
    try:
        pid = os.posix_spawn(
            executable,
            argv,
            {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED},
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, write_fd, 1),
                (os.POSIX_SPAWN_CLOSE, read_fd),
            ],
        )
    except OSError:
        os.close(read_fd)
        return None
    finally:
        os.close(write_fd)
    return ForkedBody(pid, read_fd)
