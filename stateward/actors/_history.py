"""The revision history: a bounded ring of what each revision changed.

Every action that changed something (a Ping too) leaves one entry: its
revision, the action, and its changes (paths with old and new values: the
same objects its events carry, never touched by the tree again). The ring
serves ``subscribe(..., from_revision=r)`` and ``watch(...)`` (replay, then
live) and :meth:`~stateward.StateHandle.at_revision` (undo back from now).
Revisions are contiguous, so an entry is found by arithmetic, not search.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, NamedTuple

from .._json import copy_json
from ..messages.events import ChangeKind
from ..tree import Tree

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from .._json import JSON
    from ..messages.actions import Action
    from ..paths import Segments
    from ..tree import Change

__all__ = ["Entry", "History", "undo"]


class Entry(NamedTuple):
    """What one revision changed."""

    revision: int
    action: Action
    changes: list[Change]
    created: Sequence[Segments]  # dicts made on the way to a write


class History:
    """The newest *size* entries (0 keeps none: no replay, no time travel)."""

    __slots__ = ("entries", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: deque[Entry] = deque(maxlen=size or 1)

    def record(self, entry: Entry) -> None:
        """Keep what a revision changed (the oldest entry falls out)."""
        self.entries.append(entry)

    def oldest(self, current: int) -> int:
        """The oldest revision a feed can resume from (its successor is kept)."""
        entries = self.entries
        if not self.size or not entries:
            return current
        return entries[0].revision - 1

    def since(self, revision: int) -> Iterator[Entry]:
        """The entries after *revision* (at least :meth:`oldest`), oldest first."""
        entries = self.entries
        if not self.size or not entries:
            return
        start = revision + 1 - entries[0].revision
        for i in range(max(start, 0), len(entries)):
            yield entries[i]

    def newest_first(self, down_to: int) -> Iterator[Entry]:
        """The entries after *down_to*, newest first (for undoing them)."""
        entries = self.entries
        if not self.size:
            return
        for i in range(len(entries) - 1, -1, -1):
            entry = entries[i]
            if entry.revision <= down_to:
                return
            yield entry


def undo(tree: Tree, newer: Iterator[Entry]) -> JSON:
    """Return a copy of *tree* with the entries *newer* (newest first) undone."""
    scratch = Tree(tree.root)  # a private copy
    for entry in newer:
        for change in reversed(entry.changes):
            kind = change.kind
            path = change.path
            if kind is ChangeKind.PINGED:
                continue
            if kind is ChangeKind.CREATED:
                scratch.replay_delete(path)  # a list's new last item: popped
                continue
            parent = scratch.lookup(path[:-1]) if path else None
            if kind is ChangeKind.DELETED and type(parent) is list:
                parent.insert(int(path[-1]), copy_json(change.old))
            else:
                scratch.replay_set(path, change.old)
        for prefix in reversed(entry.created):
            scratch.replay_delete(prefix)
    return scratch.root
