"""Large values of a state, read without stopping the state actor.

Copying a tree of a million leaves takes about a second, and it must be
done at one instant: on the state's loop, every writer waits that long.
Instead, a large value (the whole tree, or any part of it) is taken as
snapshots are (``persistence._fork``): a forked child holds it exactly as
it is at the fork, and encodes it while the actor goes on. A fork stops the
loop too, for a time that grows with the process's memory, whatever the
value (about 1 ms for a small process, tens of ms for gigabytes), so only a
value whose copy would take longer than the latest fork did is forked for
(:func:`read_at`). What the child encodes depends on what the caller wants:

* bytes for a file (:meth:`~stateward.Store.save`): the serializer's own,
  read from the pipe by the calling thread, which waits with the GIL free;
* a private copy (``get`` of the Store and of the async handle): a stream
  of *frames* of about :data:`FRAME_VALUES` values each, which
  :class:`Rebuild` turns back into a tree one frame at a time. A frame
  decodes in about a millisecond, and each is decoded in a turn of the
  loop of its own, so the loop is never held longer than that.

The frames are ``marshal`` data written by our own forked child and read
back by the process that forked it: never anything received from outside.
"""

from __future__ import annotations

import logging
import marshal
import struct
from typing import TYPE_CHECKING, Any, Final, cast

import anyio

from .._changes import MISSING
from .._json import copy_json, copy_within
from .persistence import _fork

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._json import JSON
    from ..paths import Segments
    from ..tree import Tree

__all__ = [
    "FRAME_VALUES",
    "READ_TIMEOUT",
    "Rebuild",
    "child_failed",
    "collect_value",
    "encode_frames",
    "read_at",
    "read_value",
]


FRAME_VALUES: Final = 2_000
"""Values (containers and scalars) per frame: each decodes in about 1 ms."""

FREEZE_FRAMES: Final = 50
"""Frames rebuilt between two freezes of a state that freezes (see
:class:`Rebuild`): 100,000 values, whose full collection would take a few ms."""

_LENGTH: Final = struct.Struct("<I")
logger = logging.getLogger(__name__)

READ_TIMEOUT: Final = 120.0
"""Seconds a child may take to encode a value before it is killed: a
million leaves take about a second; only a child that hangs (a lock held by
another thread at the fork) comes near it."""

forking = True
"""False once a child failed a read (logged): from then on large values are
copied, so that a process whose forks hang costs one timeout, not one each
read."""


def child_failed(exc: OSError) -> None:
    """A child failed to encode a value: log it, and copy from now on."""
    global forking
    forking = False
    logger.warning(
        "%s; large values of this process's states are copied from now on "
        "(the writers wait for each copy)",
        exc,
    )


# A frame is a list of groups, each ``(path, chunk)``: the container at
# *path* (keys and list indexes from the root) takes *chunk*'s items, a dict
# by ``update`` or a list by ``extend``. A container too large for one frame
# arrives empty in its parent's chunk, then filled by the groups that follow
# (in order: a dict's keys keep their order, a list's items their places).
# The first group of the first frame has the path None: its chunk is the
# root itself (whole, or empty to be filled).
_Group = tuple["tuple[str | int, ...] | None", Any]


def read_at(
    tree: Tree,
    path: Segments,
    default: JSON,
    in_child: Callable[[JSON], bytes] | None,
) -> JSON | _fork.ForkedBody:
    """The value at *path* (or *default*): a private copy, or a child encoding it.

    On the loop, at one instant. Given *in_child*, a value whose copy would
    stop the loop longer than the latest fork did (and more than
    ``_fork.COPY_AT_LEAST`` values) is encoded by a forked child with
    *in_child*; the copy begun to find that out stops there. Where fork is
    missing, a copy.
    """
    found: Any = tree.lookup(path)
    if found is MISSING:
        return default
    if type(found) is not dict and type(found) is not list:
        return cast("JSON", found)  # (immutable)
    if in_child is None or not forking:
        return cast("JSON", copy_json(found))
    small = copy_within(found, _fork.copy_budget)
    if small is not None:
        return cast("JSON", small)
    child = _fork.start(found, in_child)
    return cast("JSON", copy_json(found)) if child is None else child


async def read_value(
    tree: Tree, path: Segments, default: JSON, freeze: Callable[[], None] | None
) -> tuple[int, JSON]:
    """The revision, and a private copy of the value at *path*, in a task.

    As :func:`read_at` for a copy, at one instant, large values included
    (:func:`collect_value`, which calls *freeze* as :class:`Rebuild` does).
    """
    revision = tree.revision
    got = read_at(tree, path, default, encode_frames)
    if isinstance(got, _fork.ForkedBody):
        return await collect_value(tree, revision, path, default, got, freeze)
    return revision, got


async def collect_value(
    tree: Tree,
    revision: int,
    path: Segments,
    default: JSON,
    child: _fork.ForkedBody,
    freeze: Callable[[], None] | None,
) -> tuple[int, JSON]:
    """The value *child* encodes (:func:`read_at` at *revision*), and that revision.

    In a task of the state's loop: the child is read in a worker thread,
    and its frames are rebuilt one per turn of the loop (*freeze* as
    :class:`Rebuild` calls it). A child that fails (or takes over
    :data:`READ_TIMEOUT`) is logged and the value copied instead, at the
    revision of then (see :func:`child_failed`). Cancelled, the child is
    killed.
    """
    try:
        data = await child.collect(timeout=READ_TIMEOUT)
    except OSError as exc:
        child_failed(exc)
        return tree.revision, cast("JSON", read_at(tree, path, default, None))
    rebuild = Rebuild(freeze)
    for frame in rebuild.frames(data):
        await anyio.lowlevel.checkpoint()
        rebuild.feed(frame)
    return revision, cast("JSON", rebuild.root)


def _size(value: Any, cap: int) -> int:
    """The number of values in *value*, counted up to just over *cap*."""
    count = 0
    stack = [value]
    while stack:
        node = stack.pop()
        count += 1
        if count > cap:
            return count
        t = type(node)
        if t is dict:
            stack.extend(node.values())
        elif t is list:
            stack.extend(node)
    return count


class _Encoder:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.frame: list[_Group] = []
        self.left = FRAME_VALUES

    def group(self, path: tuple[str | int, ...] | None, chunk: Any, size: int) -> None:
        self.frame.append((path, chunk))
        self.left -= size
        if self.left <= 0:
            self.flush()

    def flush(self) -> None:
        if self.frame:
            data = marshal.dumps(self.frame)
            self.out += (_LENGTH.pack(len(data)), data)
            self.frame = []
            self.left = FRAME_VALUES

    def walk(self, path: tuple[str | int, ...], node: Any) -> None:
        """Emit the items of the large container *node* (already sent empty)."""
        is_dict = type(node) is dict
        chunk: Any = {} if is_dict else []
        used = 0
        items = node.items() if is_dict else enumerate(node)
        for key, value in items:
            size = _size(value, FRAME_VALUES)
            large = size > FRAME_VALUES
            if used and (large or used + size > self.left):
                self.group(path, chunk, used)
                chunk, used = ({} if is_dict else []), 0
            t = type(value)
            empty: Any = {} if t is dict else []
            if is_dict:
                chunk[key] = empty if large else value
            else:
                chunk.append(empty if large else value)
            used += 1 if large else size
            if large:
                self.group(path, chunk, used)
                chunk, used = ({} if is_dict else []), 0
                self.walk((*path, key), value)
        if used:
            self.group(path, chunk, used)


def encode_frames(root: JSON) -> bytes:
    """Encode *root* as length-prefixed frames for :class:`Rebuild` (in the child)."""
    encoder = _Encoder()
    if _size(root, FRAME_VALUES) <= FRAME_VALUES or type(root) not in (dict, list):
        encoder.group(None, root, 1)
    else:
        encoder.group(None, {} if type(root) is dict else [], 1)
        encoder.walk((), root)
    encoder.flush()
    return b"".join(encoder.out)


class Rebuild:
    """Turns the frames of :func:`encode_frames` back into a tree, one at a time.

    Not thread-safe: one caller feeds it, in order, on the state's loop.
    :meth:`frames` splits the child's bytes without decoding anything.

    *freeze* (the state's ``gc.freeze()``, for a state that freezes) is
    called every :data:`FREEZE_FRAMES` frames and after the last one. The
    value's new objects would otherwise bring on full collections that scan
    all of them, longer each time (3, 12, 19 and 27 ms for a million
    leaves); frozen, each scans what came since. A JSON value holds no
    cycles: frozen, it is still freed as soon as it is let go of.
    """

    __slots__ = ("_freeze", "_left", "root")

    def __init__(self, freeze: Callable[[], None] | None = None) -> None:
        self.root: Any = None
        self._freeze = freeze
        self._left = 0  # frames to feed

    def frames(self, data: bytes) -> list[memoryview]:
        """Split *data* into its frames (views: nothing is copied)."""
        view = memoryview(data)
        frames: list[memoryview] = []
        offset, end, head = 0, len(data), _LENGTH.size
        while offset < end:
            (length,) = _LENGTH.unpack_from(view, offset)
            frames.append(view[offset + head : offset + head + length])
            offset += head + length
        self._left = len(frames)
        return frames

    def feed(self, frame: memoryview) -> None:
        """Decode one frame and put its values in place."""
        self._place(marshal.loads(frame))
        self._left -= 1
        if self._freeze is not None and self._left % FREEZE_FRAMES == 0:
            self._freeze()  # (after the last frame too: _left == 0)

    def _place(self, groups: list[_Group]) -> None:
        for path, chunk in groups:
            if path is None:
                self.root = chunk
                continue
            node = self.root
            for seg in path:
                node = node[seg]
            if type(node) is dict:
                node.update(chunk)
            else:
                node.extend(chunk)
