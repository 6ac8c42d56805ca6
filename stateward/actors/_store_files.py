"""The files of a :class:`~stateward.Store`: serializers, and the file's identity.

A ``state_file`` is one document written whole; these are the pieces that
concern the file, not the state: how the tree becomes bytes, how a change
of the file by another writer is noticed, and the temp files a killed
process left behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import re
import time
import warnings
from typing import TYPE_CHECKING, Protocol, final

from .._json import check_decoded, own_json
from ._files import open_regular
from .persistence._sliced_json import loads_in_slices

if TYPE_CHECKING:
    from .._json import JSON

__all__ = [
    "JsonSerializer",
    "PickleSerializer",
    "Serializer",
    "file_identity",
    "load_state_file",
    "remove_stale_temps",
]

logger = logging.getLogger("stateward.actors.store")


class Serializer(Protocol):
    """Turns the whole tree into bytes and back, for :class:`Store` files."""

    def dumps(self, value: JSON) -> bytes:
        """Encode *value*."""
        ...

    def loads(self, data: bytes) -> object:
        """Decode *data* (the result is validated as strict JSON afterwards)."""
        ...


@final
class JsonSerializer:
    """UTF-8 JSON (the default), pretty-printed with *indent* when given."""

    def __init__(self, indent: int | None = 2) -> None:
        self.indent = indent

    def dumps(self, value: JSON) -> bytes:
        """Encode *value* as strict JSON (no NaN, no Infinity)."""
        return json.dumps(
            value, indent=self.indent, ensure_ascii=False, allow_nan=False
        ).encode()

    def loads(self, data: bytes) -> object:
        """Decode JSON; NaN and Infinity are refused."""

        def refuse(name: str) -> None:
            msg = f"{name} is not JSON"
            raise ValueError(msg)

        return json.loads(data, parse_constant=refuse)


@final
class PickleSerializer:
    """Pickle, for local files you wrote yourself: never for anything received.

    Unpickling runs code chosen by whoever wrote the file, so stateward never
    picks it on its own: you must pass it by name, and it is refused for
    anything but a local ``state_file``.
    """

    def dumps(self, value: JSON) -> bytes:
        """Pickle *value*."""
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> object:
        """Unpickle *data* (trusted local files only)."""
        return pickle.loads(data)  # explicit opt-in, local files only


def file_identity(st: os.stat_result) -> tuple[int, int, int]:
    """What changes when anyone rewrites a file (an atomic save: a new inode)."""
    return st.st_ino, st.st_size, st.st_mtime_ns


def remove_stale_temps(path: str) -> None:
    """Remove the temp files of saves that a killed process left beside *path*.

    ``save()`` writes ``<file>.<pid>.tmp`` then renames it: a process killed
    in between leaves one behind. Those of processes still alive are kept.
    """
    directory = os.path.dirname(os.path.abspath(path))
    pattern = re.compile(re.escape(os.path.basename(path)) + r"\.(\d+)\.tmp")
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        m = pattern.fullmatch(name)
        if m is None or _alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, name))
            logger.info("removed %s, left by a process that is gone", name)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def load_state_file(
    path: str, serializer: Serializer, start: JSON, *, sliced: bool = False
) -> tuple[JSON, tuple[int, int, int] | None]:
    """The tree in the ``state_file`` at *path*, and the file's identity.

    Missing: *start* (and no identity). Malformed: *start*, with a warning,
    the bad file renamed aside (never overwritten). Stale temp files of a
    killed save are removed first. Blocking; any thread. With *sliced*,
    JSON is decoded in short calls (the same value and errors), so that
    the running states of the process are not stopped meanwhile.

    Raises:
        CorruptStateError: *path* is not a regular file (a FIFO, a directory).
    """
    remove_stale_temps(path)
    try:
        # A FIFO or a directory is refused (CorruptStateError), never read.
        with os.fdopen(open_regular(path, follow=True), "rb") as f:
            seen = file_identity(os.fstat(f.fileno()))
            data = f.read()
    except FileNotFoundError:
        return start, None
    try:
        plain_json = type(serializer) is JsonSerializer
        value = (
            loads_in_slices(data) if plain_json and sliced else serializer.loads(data)
        )
        if plain_json:
            # Decoded JSON is private, plain and unshared already: checked in
            # place, not copied (a second at a million leaves).
            return check_decoded(value, "state file"), seen
        # Anything else (pickle: shared or non-JSON objects) is converted.
        return own_json(value, "state file"), seen
    except Exception as exc:  # noqa: BLE001 - any decoder error means "malformed"
        base = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
        aside, n = base, 1
        while os.path.exists(aside):
            n += 1
            aside = f"{base}.{n}"
        os.replace(path, aside)
        warnings.warn(
            f"{path} is not a valid state file ({exc}); starting from the "
            f"default, the bad file is kept as {aside}",
            RuntimeWarning,
            stacklevel=3,  # the Store(...) call
        )
        return start, seen
