"""The state tree engine: apply an action, return the changes (pure, sync, no I/O).

:class:`Tree` owns a JSON document and a revision number. :meth:`Tree.apply`
applies one action atomically: it either returns the changes it made, in
order, or raises an :class:`ActionRejectedError` having changed nothing. It
sits above ``messages/`` because it dispatches on action classes; the actors
sit above it.

Cost per action is O(path depth + size of the written value): the tree is
never copied or walked as a whole. The one deep copy is of the written value,
so the tree shares no container with a message, an event or a reader.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Final, NoReturn

from ._changes import MISSING, Change, _Missing, lookup_in, same_value
from ._errors import (
    ActionRejectedError,
    PathConflictError,
    PathNotFoundError,
    RevisionMismatchError,
)
from ._json import JSON, _a, copy_json, own_json
from .messages.actions import Action, Delete, Merge, Ping, Set, Transaction
from .messages.events import ChangeKind
from .paths import PathLike, Segments, format_path, is_index, parse_path

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .messages.actions import EqualityOption

__all__ = ["LARGE_NODE", "Tree"]

LARGE_NODE: Final = 4096
"""A replaced or deleted container with more members than this is handed
over (:attr:`Tree.dropped`) rather than freed with its last reference: a
million-member one takes 80 ms to free in one go."""


_ROOT: Final = ""
_CREATED: Final = ChangeKind.CREATED
_UPDATED: Final = ChangeKind.UPDATED
_DELETED: Final = ChangeKind.DELETED
_PINGED: Final = ChangeKind.PINGED


# Nodes of the document are typed Any inside this module: they hold arbitrary
# JSON and are checked by type() at run time; the public signatures stay JSON.
_Node = Any

# An undo record: (container, key or index, previous value or MISSING, op).
_Undo = tuple[object, object, object, int]
_OP_SET: Final = 0  # container[key] = previous (or del container[key] if MISSING)
_OP_POP: Final = 1  # the list grew by one: pop it
_OP_INSERT: Final = 2  # an element was removed: insert it back


class Tree:
    """A JSON document with a revision number, changed only through actions.

    Not thread-safe and not async: the state actor owns it, and every method
    runs to completion without yielding, which is what makes each action
    atomic for every other task.
    """

    __slots__ = ("__weakref__", "_box", "_offered", "created", "dropped", "revision")

    def __init__(self, root: JSON | None = None, *, revision: int = 0) -> None:
        """Create a tree holding a private copy of *root* (``{}`` when None)."""
        # The root lives in a one-element list so that replacing it is an
        # ordinary "container[key] = value" like any other write.
        self._box: list[JSON] = [{} if root is None else own_json(root, "initial")]
        self.created: list[Segments] | None = None
        """When a list: the dicts the latest action created on its way to a
        write (and the writes made after it in the same revision). Each
        action after one that created some starts a new list, so that the
        previous one may be kept."""
        self.revision = revision
        """The revision of the last action that changed something."""
        self._offered: tuple[JSON, JSON] | None = None  # see offer()
        self.dropped: list[JSON] | None = None
        """When a list: the large containers (more than :data:`LARGE_NODE`
        members) that writes replaced or deleted, for their owner to free
        (the state's reaper takes and clears it after each step)."""

    @classmethod
    def adopt(cls, root: JSON, *, revision: int = 0) -> Tree:
        """Make a tree that takes *root* as it is: no validation, no copy.

        For values that are already valid and private (a snapshot decoded and
        checked by ``check_json``): a large state is not copied twice.
        """
        tree = cls({}, revision=revision)
        if root is not None:  # None means {}, as for the constructor
            tree._box[0] = root
        return tree

    def offer(self, value: JSON, copy: JSON) -> None:
        """Let the next write of the very object *value* at the root store *copy*.

        *copy* must be a valid deep copy of *value* that nothing else holds
        or changes (a checkpoint's tree, decoded and checked in a worker
        thread): a whole tree is then set without a copy on the event loop.
        Any other write copies as usual. Taken once; :meth:`withdraw` drops
        an offer that was not taken (the action was refused).
        """
        self._offered = (value, copy)

    def withdraw(self) -> None:
        """Drop the offer of :meth:`offer`, taken or not."""
        self._offered = None

    @property
    def root(self) -> JSON:
        """The live root value: never mutate it, never hand it out."""
        return self._box[0]

    def take_root(self) -> JSON:
        """Take the root out, leaving ``{}`` (for a stopped state's owner to free)."""
        root, self._box[0] = self._box[0], {}
        return root

    def when_gone(self, free: Callable[[list[JSON]], None]) -> None:
        """Once this tree is garbage, call *free* with a list holding its root.

        The list is then the root's only holder (unless something else kept
        a reference to it): *free* decides when and how it is freed, instead
        of the tree's last reference freeing it all at once. Not called at
        the interpreter's exit.
        """
        weakref.finalize(self, free, self._box).atexit = False

    def lookup(self, path: Segments) -> JSON | _Missing:
        """Return the live value at *path*, or :data:`MISSING` (no copy: read-only)."""
        return lookup_in(self._box[0], path)

    def read(self, path: PathLike, default: JSON = None) -> JSON:
        """Return a private deep copy of the value at *path*, or *default*."""
        found = self.lookup(parse_path(path))
        return default if isinstance(found, _Missing) else copy_json(found)

    def apply(self, action: Action) -> list[Change]:
        """Apply *action* atomically and return its changes, in order.

        An action that changes nothing (an equal write, a missing delete)
        returns ``[]`` and keeps the revision; otherwise the revision goes up
        by one for the whole action.

        Raises:
            ActionRejectedError: The action cannot be applied; nothing changed.
        """
        if self.created:
            self.created = []
        changes: list[Change] = []
        if type(action) is Set:  # the most common action, without _apply's dispatch
            self._set(parse_path(action.path), action.value, action.eq, changes, None)
        elif type(action) is Transaction:
            undo: list[_Undo] = []
            try:
                self._apply(action, changes, undo)
            except BaseException:
                self._rollback(undo)
                raise
        else:
            # A single action raises only before its first mutation (it checks
            # the existing nodes before creating any), so it needs no undo log.
            self._apply(action, changes, None)
        if changes:
            self.revision += 1
        return changes

    def _apply(
        self, action: Any, changes: list[Change], undo: list[_Undo] | None
    ) -> None:
        t = type(action)
        if t is Set:
            self._set(parse_path(action.path), action.value, action.eq, changes, undo)
        elif t is Delete:
            self._delete(parse_path(action.path), action.missing_ok, changes, undo)
        elif t is Merge:
            self._merge(
                parse_path(action.path), action.mapping, action.eq, changes, undo
            )
        elif t is Ping:
            self.ping(parse_path(action.path), changes)
        elif t is Transaction:
            expected = action.if_revision
            if expected is not None and expected != self.revision:
                raise RevisionMismatchError(expected, self.revision)
            if undo is None:
                undo = []
            for inner in action.actions:
                self._apply(inner, changes, undo)
        else:
            reason = f"unknown action type {t.__name__}"
            raise ActionRejectedError(_ROOT, reason)

    def replay_set(
        self, path: Segments, value: JSON, changes: list[Change] | None = None
    ) -> None:
        """Write *value* at *path* unconditionally (journal replay; no revision change).

        Its change is appended to *changes* when given.

        Raises:
            ActionRejectedError: The path cannot be written here.
        """
        self._set(path, value, False, [] if changes is None else changes, None)

    def replay(
        self,
        ops: list[tuple[str, Segments, JSON]],
        changes: list[Change] | None = None,
    ) -> None:
        """Apply one journal record's operations, all or none (no revision change).

        *ops* are ``("s", path, value)``, ``("d", path, None)`` and ``("p",
        path, None)``; their changes are appended to *changes* when given.
        Without *changes* (recovery: nobody watches), the values are taken
        as they are, so they must be private (decoded from the journal).

        Raises:
            ActionRejectedError: An operation cannot be applied here; the tree
                and *changes* are left as they were.
        """
        # Recovery's common record, one write: no change list, undo log or
        # copy, which only the feed and multi-operation records need.
        if (
            changes is None
            and len(ops) == 1
            and ops[0][0] == "s"
            and self.restore(ops[0][1], ops[0][2])
        ):
            return
        out: list[Change] = [] if changes is None else changes
        mark = len(out)
        # One operation needs no undo log: it checks before it changes.
        undo: list[_Undo] | None = [] if len(ops) > 1 else None
        try:
            for kind, path, value in ops:
                if kind == "s":
                    self._set(path, value, False, out, undo)
                elif kind == "d":
                    self._delete(path, True, out, undo)
                elif changes is not None:
                    self.ping(path, out)
        except BaseException:
            if undo is not None:
                self._rollback(undo)
            del out[mark:]
            raise

    def restore(self, path: Sequence[str], value: JSON) -> bool:
        """Write *value*, taken as it is, at *path*, through dicts only.

        The missing dicts are created. Returns False, having changed
        nothing, for anything else (the root, a list or a scalar on the way,
        or an action history recording the dicts it creates): the caller
        then takes the general way. *value* must be private and valid JSON
        (decoded from the journal); the revision is not changed.
        """
        if not path or self.created is not None:
            return False
        node: _Node = self._box[0]
        for seg in path[:-1]:
            if type(node) is not dict:
                return False  # (nothing was created: a new dict holds dicts)
            child = node.get(seg, MISSING)
            if child is MISSING:
                child = node[seg] = {}
            node = child
        if type(node) is not dict:
            return False
        node[path[-1]] = value
        return True

    def set_derived(self, path: Segments, value: JSON, changes: list[Change]) -> None:
        """Write a derived value as part of the action just applied (same revision).

        Equal values change nothing. Appends its changes to *changes*.

        Raises:
            ActionRejectedError: The path cannot be written here; nothing changed.
        """
        self._set(path, value, True, changes, None)

    def ping(self, path: Segments, changes: list[Change]) -> None:
        """Append the change of a ping of *path*: its value, as old and new."""
        found = self.lookup(path)
        value = None if isinstance(found, _Missing) else copy_json(found)
        changes.append(Change(path, _PINGED, value, value))

    def replay_delete(
        self, path: Segments, changes: list[Change] | None = None
    ) -> None:
        """Remove *path* if present (journal replay; no revision change)."""
        self._delete(path, True, [] if changes is None else changes, None)

    # -- primitives ---------------------------------------------------------

    def _parent(
        self, path: Segments, *, create: bool, undo: list[_Undo] | None
    ) -> _Node:
        """Walk to the container of *path*'s last segment.

        Existing nodes are checked before anything is created, so a rejection
        never leaves created dicts behind. Returns None when a node is missing
        and *create* is false.
        """
        node: _Node = self._box[0]
        for depth in range(len(path) - 1):
            seg = path[depth]
            t = type(node)
            if t is dict:
                child = node.get(seg, MISSING)
                if child is MISSING:
                    if not create:
                        return None
                    child = {}
                    node[seg] = child
                    if self.created is not None:
                        self.created.append(path[: depth + 1])
                    if undo is not None:
                        undo.append((node, seg, MISSING, _OP_SET))
                node = child
            elif t is list:
                i = _index(path, depth, len(node), allow_end=False)
                if i is None:
                    if not create:
                        return None
                    _out_of_range(path, depth, len(node))
                node = node[i]
            else:
                if not create:
                    return None
                _not_container(path, depth, node)
        t = type(node)
        if t is dict or t is list:
            return node
        if not create:
            return None
        return _not_container(path, len(path) - 1, node)

    def _set(
        self,
        path: Segments,
        value: JSON,
        eq: EqualityOption,
        changes: list[Change],
        undo: list[_Undo] | None,
    ) -> None:
        container: _Node
        key: Any
        old: _Node
        whole = not path
        if whole:
            container, key, old = self._box, 0, self._box[0]
        else:
            container = self._parent(path, create=True, undo=undo)
            last = path[-1]
            if type(container) is dict:
                key = last
                old = container.get(last, MISSING)
            else:
                key = _index(path, len(path) - 1, len(container), allow_end=True)
                if key is None:
                    _out_of_range(path, len(path) - 1, len(container))
                old = container[key] if key < len(container) else MISSING
        if old is not MISSING and same_value(eq, old, value):
            return
        offered = self._offered if whole else None
        if offered is not None and offered[0] is value:
            stored = offered[1]
            self._offered = None
        else:
            stored = copy_json(value)
        if old is MISSING and type(container) is list:
            container.append(stored)
            if undo is not None:
                undo.append((container, key, MISSING, _OP_POP))
            changes.append(Change(path, _CREATED, None, value))
            return
        container[key] = stored
        if undo is not None:
            undo.append((container, key, old, _OP_SET))
        if old is MISSING:
            changes.append(Change(path, _CREATED, None, value))
        else:
            changes.append(Change(path, _UPDATED, old, value))
            t = type(old)
            if (t is dict or t is list) and len(old) > LARGE_NODE:
                self._drop(old)

    def _drop(self, old: JSON) -> None:
        if self.dropped is not None:
            self.dropped.append(old)

    def _delete(
        self,
        path: Segments,
        missing_ok: bool,
        changes: list[Change],
        undo: list[_Undo] | None,
    ) -> None:
        if not path:
            reason = "the root cannot be deleted; Set('', {}) clears it"
            raise PathConflictError(_ROOT, reason)
        # Missing means what lookup() says: also a path through a scalar or a
        # non-index segment on a list, which cannot exist either.
        if self.lookup(path) is MISSING:
            if missing_ok:
                return
            raise PathNotFoundError(format_path(path), "no such path")
        container = self._parent(path, create=False, undo=undo)
        last = path[-1]
        if type(container) is dict:
            old = container.pop(last)
            if undo is not None:
                undo.append((container, last, old, _OP_SET))
        else:
            i = int(last)
            old = container.pop(i)
            if undo is not None:
                undo.append((container, i, old, _OP_INSERT))
        changes.append(Change(path, _DELETED, old, None))
        t = type(old)
        if (t is dict or t is list) and len(old) > LARGE_NODE:
            self._drop(old)

    def _merge(
        self,
        path: Segments,
        mapping: dict[str, JSON],
        eq: EqualityOption,
        changes: list[Change],
        undo: list[_Undo] | None,
    ) -> None:
        target = self.lookup(path)
        if target is MISSING:
            self._set(path, mapping, eq, changes, undo)
            return
        if type(target) is not dict:
            reason = f"Merge needs a dict here, found {_a(type(target).__name__)}"
            raise PathConflictError(format_path(path), reason)
        for key, value in mapping.items():
            self._set((*path, key), value, eq, changes, undo)

    @staticmethod
    def _rollback(undo: list[_Undo]) -> None:
        container: _Node
        for container, key, previous, op in reversed(undo):
            if op == _OP_SET:
                if previous is MISSING:
                    del container[key]
                else:
                    container[key] = previous
            elif op == _OP_POP:
                container.pop()
            else:
                container.insert(key, previous)


def _index(path: Segments, depth: int, length: int, *, allow_end: bool) -> int | None:
    seg = path[depth]
    if not is_index(seg):
        reason = f"segment {seg!r} must be a list index (a list is there)"
        raise PathConflictError(format_path(path[: depth + 1]), reason)
    i = int(seg)
    if i < length or (allow_end and i == length):
        return i
    return None


def _out_of_range(path: Segments, depth: int, length: int) -> NoReturn:
    reason = f"index {path[depth]} is out of range for a list of length {length}"
    raise PathConflictError(format_path(path[: depth + 1]), reason)


def _not_container(path: Segments, depth: int, node: object) -> NoReturn:
    where = format_path(path[:depth]) or "the root"
    reason = f"cannot go below {where!r}: it holds {_a(type(node).__name__)}"
    raise PathConflictError(format_path(path), reason)
