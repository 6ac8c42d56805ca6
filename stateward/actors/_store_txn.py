"""Store transactions: :class:`StoreTransactions`, and their private view of the tree.

A :meth:`~stateward.Store.transaction` checks its writes against a private
copy of the tree, so that a write that cannot be applied returns False at
once and the block reads its own writes. Copying the whole tree when the
transaction begins costs O(tree) on the state's loop, during which no
other write is applied: about a second at a million leaves, for every
transaction. :class:`Scratch` copies only what the transaction touches.

The state's loop hands over the whole tree when it is small (at most
:data:`WHOLE_BELOW` nodes, a bounded copy); otherwise each path the
transaction reads or writes is fetched from the state the first time it is
touched, as the state was when the transaction began:

* the value at the path, when every node above it is a dict;
* else the first node above it that is not a dict (a list or a scalar,
  copied whole), or the fact that a key on the way is missing.

The fetched part becomes *known*: from then on the scratch alone answers
for everything below it. What is known is exactly what the tree's own
checks look at for a read, a ``Set`` or a ``Delete`` at that path (the
nodes on the way, and the value there), so each of them is accepted or
refused as it would be on a copy of the whole tree. A part fetched above
parts already known (a read of ``jobs`` after a write to ``jobs.5``) is
overlaid with them: the transaction's own writes win.

Every fetch checks that the state is still at the transaction's revision.
If it moved, the transaction cannot commit anyway (it is applied with
``if_revision``): :class:`~stateward.RevisionMismatchError` is raised at
once, and so the block never sees a mix of two revisions.
"""

from __future__ import annotations

import contextlib
import functools
import random
import threading
import time
from typing import TYPE_CHECKING, Any, Final, Self, cast

from .._changes import MISSING
from .._checks import check_callable, check_int
from .._errors import ActionRejectedError, RevisionMismatchError
from .._json import copy_json, copy_within
from ..messages.actions import Set, Transaction
from ..paths import parse_path
from ..tree import Tree

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterator

    from .._changes import _Missing
    from .._json import JSON
    from ..messages.actions import Action, Delete
    from ..paths import PathLike, Segments

__all__: list[str] = []  # internal: the Store's

WHOLE_BELOW: Final = 2_000
"""Trees of at most this many nodes are copied whole when a transaction
begins (one hop to the loop, a copy of a few tens of microseconds)."""

Fetched = tuple[int, Any]
"""What :func:`fetch_at` found: how many segments of the path it followed,
and the value there (a private copy) or :data:`~stateward.tree.MISSING`."""


def copy_small(root: JSON, limit: int | None = None) -> JSON | _Missing:
    """A private copy of *root*, or MISSING if it holds over *limit* values.

    *limit* is :data:`WHOLE_BELOW` unless given. On the loop: a large tree
    costs no more than a copy of *limit* values (see ``copy_within``).
    """
    if type(root) is not dict and type(root) is not list:
        return root
    copied = copy_within(root, WHOLE_BELOW if limit is None else limit)
    return MISSING if copied is None else cast("JSON", copied)


def fetch_at(tree: Tree, revision: int, path: Segments) -> Fetched:
    """On the loop: what a scratch needs of *path*, at *revision*.

    Raises:
        RevisionMismatchError: The state moved past *revision*.
    """
    if tree.revision != revision:
        raise RevisionMismatchError(revision, tree.revision)
    node: Any = tree.root
    for depth, seg in enumerate(path):
        if type(node) is not dict:
            return depth, copy_json(node)  # a list or a scalar, whole
        node = node.get(seg, MISSING)
        if node is MISSING:
            return depth + 1, MISSING
    return len(path), copy_json(node)


class Scratch:
    """The tree as one transaction sees it: the state at its revision, and its writes.

    Concurrency: belongs to the thread whose transaction made it. *fetch*
    runs :func:`fetch_at` on the state's loop and may raise
    :class:`~stateward.RevisionMismatchError`.
    """

    __slots__ = ("_fetch", "_known", "tree")

    def __init__(
        self,
        revision: int,
        whole: JSON | _Missing,
        fetch: Callable[[Segments], Fetched],
    ) -> None:
        self._fetch = fetch
        if whole is MISSING:
            self.tree = Tree.adopt({}, revision=revision)  # nothing known yet
            self._known: set[Segments] = set()
        else:
            self.tree = _tree_of(cast("JSON", whole), revision)
            self._known = {()}

    def read(self, path: PathLike, default: JSON) -> JSON:
        """A copy of the value at *path* as the transaction sees it, or *default*."""
        segments = parse_path(path)
        self.prepare(segments)
        return self.tree.read(segments, default)

    def prepare_action(self, action: Set | Delete) -> None:
        """Fetch what applying *action* (the Store's writes) to :attr:`tree` looks at.

        Raises:
            RevisionMismatchError: The state moved since the transaction began.
        """
        self.prepare(parse_path(action.path))

    def prepare(self, path: Segments) -> None:
        """Make the scratch know *path*: the nodes on the way and the value there."""
        known = self._known
        for depth in range(len(path) + 1):
            if path[:depth] in known:
                return
        depth, value = self._fetch(path)
        at = path[:depth]
        under = sorted((k for k in known if k[:depth] == at), key=len)
        if value is not MISSING:
            value = self._overlay(at, value, under)
        self._graft(at, value)
        known.difference_update(under)
        known.add(at)

    def _overlay(self, at: Segments, value: Any, under: list[Segments]) -> Any:
        """*value* (fetched at *at*) with the scratch's known parts below it."""
        done: list[Segments] = []
        for path in under:
            if any(path[: len(d)] == d for d in done):
                continue  # inside a part already laid over
            done.append(path)
            mine = self.tree.lookup(path)
            rel = path[len(at) :]
            parent = value
            for seg in rel[:-1]:
                # A known part was fetched through dicts, at the same revision.
                assert type(parent) is dict, (at, path)
                parent = parent[seg]
            assert type(parent) is dict, (at, path)
            if mine is MISSING:
                parent.pop(rel[-1], None)
            else:
                parent[rel[-1]] = mine
        return value

    def _graft(self, at: Segments, value: Any) -> None:
        """Put *value* (or nothing, when MISSING) at *at* in the scratch."""
        if not at:
            self.tree = _tree_of({} if value is MISSING else value, self.tree.revision)
            return
        node: Any = self.tree.root
        for seg in at[:-1]:
            # Nothing above *at* is known: only partial dicts lie on the way.
            node = node.setdefault(seg, {})
        if value is MISSING:
            node.pop(at[-1], None)
        else:
            node[at[-1]] = value


def _tree_of(root: JSON, revision: int) -> Tree:
    tree = Tree.adopt(root, revision=revision)
    if root is None:  # (adopt reads None as {}): a null root stays null
        tree.apply(Set("", None))
        tree.revision = revision
    return tree


# -- the Store's side -------------------------------------------------------------


_TXN: Final = threading.local()


def _pending() -> dict[int, tuple[Scratch, list[Action]]]:
    """This thread's open transactions, by Store: (scratch, actions).

    The scratch's revision is the state's revision when the transaction
    began (its ``if_revision``).
    """
    pending: dict[int, tuple[Scratch, list[Action]]] = _TXN.__dict__.setdefault(
        "pending", {}
    )
    return pending


class StoreTransactions:
    """``transaction()`` and ``update()``, as blocking calls.

    A base of :class:`~stateward.Store` (not used alone): a transaction
    belongs to the thread that opened it; transactions of one Store run one
    at a time.
    """

    _autosave: bool
    _txn_lock: threading.Lock

    def _on_loop(self, fn: Callable[..., Any], *args: object) -> Any:
        raise NotImplementedError  # pragma: no cover - the Store's

    def _live_tree(self) -> Tree:
        raise NotImplementedError  # pragma: no cover - the Store's

    def _send(self, action: Action) -> None:
        raise NotImplementedError  # pragma: no cover - the Store's

    def save(
        self, path: str | os.PathLike[str] | None = None, *, force: bool = False
    ) -> str:
        raise NotImplementedError  # pragma: no cover - the Store's

    def _read_small(self) -> tuple[int, JSON | _Missing]:
        """The revision, and the whole tree if it is small (on the loop)."""
        tree = self._live_tree()
        return tree.revision, copy_small(tree.root)

    def _fetch(self, revision: int, path: Segments) -> Fetched:
        """A transaction's part of the tree at *revision* (on the loop)."""
        return fetch_at(self._live_tree(), revision, path)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Self]:
        """Group writes: all applied at the exit, as one action, or none.

        Writes inside are checked against a private copy of the tree and
        visible to :meth:`get` in this thread only. An exception in the block
        discards them: the tree and the file stay as they were. Nested
        transactions join the outer one; only the outermost applies (and, with
        ``autosave``, saves) anything.

        The block sees the state as it was when the transaction began, plus
        its own writes. A small tree (up to 2,000 values) is copied whole at
        the start; a larger one a path at a time, the first time the block
        reads or writes there, so that a transaction costs what it touches,
        not the size of the tree (and never holds up other writers for it).
        If another write landed before such a first touch, the state the
        transaction began from is gone: that read or write raises
        :class:`~stateward.RevisionMismatchError` at once (the group could
        not have been applied anyway).

        Isolation: transactions of one Store run one at a time (a second
        thread's ``transaction()`` waits for the first to end), so a
        read-modify-write inside one never loses another transaction's
        update. A plain :meth:`set` or :meth:`delete` from another thread
        may still land in between: then the group is applied only if the
        state is still at the revision the transaction read
        (``Transaction(..., if_revision=...)``), and otherwise nothing is
        applied and :class:`~stateward.RevisionMismatchError` is raised. Use
        :meth:`update` to retry such a group automatically.

        Raises:
            RevisionMismatchError: A write outside the transaction landed
                since it began (raised at the exit, or in the block by the
                first touch of a part of a large tree); nothing was applied.
            ActionRejectedError: The group cannot be applied; nothing was.
        """
        pending = _pending()
        if id(self) in pending:
            yield self
            return
        with self._txn_lock:
            revision, whole = self._on_loop(self._read_small)
            fetch = functools.partial(self._on_loop, self._fetch, revision)
            pending[id(self)] = (Scratch(revision, whole, fetch), [])
            try:
                yield self
            except BaseException:
                del pending[id(self)]
                raise
            _, actions = pending.pop(id(self))
            if actions:
                self._send(Transaction(actions, if_revision=revision))
                if self._autosave:
                    self.save()

    def update(self, fn: Callable[[Self], object], *, attempts: int = 10) -> object:
        """Run *fn(store)* in a :meth:`transaction`, again on a conflict.

        For read-modify-write code: ``store.update(lambda s: s.set("n",
        s.get("n") + 1))``. *fn* may run more than once, so it should only
        read and write this Store. Returns what *fn* returned. Between tries
        it sleeps a random moment that doubles each time (up to 64 ms), so
        that busy writers cannot keep it from ever applying. Blocks.

        Raises:
            RevisionMismatchError: Still conflicting after *attempts* tries.
            InvalidActionError: *fn* is not callable, or *attempts* < 1.
        """
        check_callable("fn", fn)
        check_int("attempts", attempts, 1)
        for attempt in range(attempts):
            try:
                with self.transaction():
                    result = fn(self)
            except RevisionMismatchError:
                if attempt + 1 == attempts:
                    raise
                time.sleep(random.uniform(0, 0.001 * 2 ** min(attempt, 6)))
                continue
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _scratch(self) -> Scratch | None:
        entry = _pending().get(id(self))
        return None if entry is None else entry[0]

    def _stage(self, scratch: Scratch, action: Set | Delete) -> bool:
        """A write inside this thread's transaction: checked, kept for the exit."""
        scratch.prepare_action(action)  # (a mismatch is raised, not a False)
        try:
            scratch.tree.apply(action)
        except ActionRejectedError:
            return False
        _pending()[id(self)][1].append(action)
        return True
