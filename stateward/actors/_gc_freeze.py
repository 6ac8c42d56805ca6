"""When a state moves what it holds out of the garbage collector's full collections.

A full collection of Python's cyclic garbage collector scans every object:
in a million-leaf tree that stops the whole process for 70-170 ms, about
once per million allocations. ``gc.freeze()`` moves every object that
exists to a generation the collector never scans; it moves lists and costs
the same for any size. A state that freezes does it once loaded, at each
snapshot, and at least every :data:`FREEZE_EVERY` revisions, so that what
is written meanwhile never grows into a long collection either.

It is process-wide: cyclic garbage among objects that existed at a freeze
(the application's too) is not collected until ``gc.unfreeze()``. A JSON
tree has no cycles, but the state's own objects do (the actor and its
persister point at each other, and at the tree): frozen while the state
ran, they would keep a closed state's tree alive for good. So when the
last state that froze closes, it calls ``gc.unfreeze()``, and the next
full collections free what closed states left. Hence the choice
(docs/persistence.md, *Garbage-collection pauses*): a persisted state
freezes unless told not to (``freeze_gc=False``); a state in memory does
when told to, or, by default, when its initial tree is large
(:data:`LARGE`): small states, the many of a test suite among them, leave
the collector alone.
"""

from __future__ import annotations

import gc
import threading
from typing import TYPE_CHECKING, Final

from .._json import json_size
from .persistence import ADAPTIVE_SNAPSHOT_EVERY

if TYPE_CHECKING:
    from .._json import JSON

__all__ = ["FREEZE_EVERY", "LARGE", "Freezer", "freezes_in_memory"]

FREEZE_EVERY: Final = ADAPTIVE_SNAPSHOT_EVERY
"""Revisions between two freezes, at most (a snapshot freezes too)."""

LARGE: Final = 2_000_000
"""The size (``json_size``, about the bytes of its JSON) from which the initial
tree of a state in memory makes it freeze by default: about 100,000 leaves,
where a full collection starts to last more than 10 ms."""


_open = 0  # states open that freeze (each state's loop, or a Store's thread)
_open_lock = threading.Lock()


class Freezer:
    """Freezes one state's objects: now, then at least every :data:`FREEZE_EVERY`.

    Made when the state is loaded; used on the state's loop only, and
    closed (:meth:`close`) when the state has stopped.
    """

    __slots__ = ("_at",)

    def __init__(self, on: bool, revision: int) -> None:
        global _open
        self._at = revision if on else None  # the revision of the last freeze
        if on:
            with _open_lock:
                _open += 1
            gc.freeze()  # the loaded tree: never scanned by full collections

    def close(self) -> None:
        """The state stopped: the last one open that froze unfreezes (once).

        What stays frozen while another such state runs waits for it to close.
        """
        global _open
        if self._at is None:
            return
        self._at = None
        with _open_lock:
            _open -= 1
            if _open == 0:
                gc.unfreeze()

    def freeze(self) -> None:
        """Freeze now, if this state freezes.

        A large value read (see ``Rebuild``), on the state's loop; or the
        revisions kept for a resumed subscriber (``replay_files``), in the
        worker thread the loop awaits.
        """
        if self._at is not None:
            gc.freeze()

    def advance(self, revision: int, *, now: bool = False) -> None:
        """The tree reached *revision*: freeze if it is time (or *now*, a snapshot)."""
        at = self._at
        if at is not None and (now or revision - at >= FREEZE_EVERY):
            self._at = revision
            gc.freeze()


def freezes_in_memory(choice: bool | None, tree: JSON) -> bool:
    """Whether a state in memory freezes: *choice*, or (None) whether *tree* is large.

    Counting stops at :data:`LARGE`: a big tree costs no more than that to judge.
    """
    if choice is not None:
        return choice
    return json_size(tree, LARGE) >= LARGE
