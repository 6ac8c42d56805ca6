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
(:data:`LARGE`), or once a full collection is seen to last longer than
:data:`LONG` while it runs (a tree that grew, a long history): small
states, the many of a test suite among them, leave the collector alone.
The watch is one callback in :data:`gc.callbacks` that times full
collections, there while a state watches.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from typing import TYPE_CHECKING, Final

from .._json import json_size

if TYPE_CHECKING:
    from .._json import JSON

__all__ = ["FREEZE_EVERY", "LARGE", "LONG", "Freezer", "freezes_in_memory"]

logger = logging.getLogger(__name__)

FREEZE_EVERY: Final = 2_000
"""Revisions between two freezes, at most (a snapshot freezes too).

What is written between two freezes is what a full collection scans: a
state grown to 300,000 leaves with a history of 100,000 revisions saw
full collections of 8-19 ms every 10,000 revisions, and none every 2,000.
A freeze costs the same for any size (and the young generations' collection
before it, well under a millisecond)."""

LARGE: Final = 2_000_000
"""The size (``json_size``, about the bytes of its JSON) from which the initial
tree of a state in memory makes it freeze by default: about 100,000 leaves,
where a full collection starts to last more than 10 ms."""


LONG: Final = 0.010
"""A full collection that lasts longer than this (in seconds) makes a state in
memory that watches (``freeze_gc=None``, a small initial tree) freeze from
then on: the target of a state without pauses is none over 10 ms."""


_open = 0  # states open that freeze (each state's loop, or a Store's thread)
_watching = 0  # states open that watch the full collections
_open_lock = threading.Lock()
_long = 0  # full collections longer than LONG seen while a state watched
_started = 0.0  # when the running full collection started


def _freeze() -> None:
    """Collect the young generations, then freeze what is left.

    Cyclic garbage there (the application's, the event loop's) is collected
    instead of frozen, where it would stay until ``gc.unfreeze()``: up to
    a few hundred objects a freeze, each time. The young generations hold
    at most some thousands of objects, so this costs well under a
    millisecond.
    """
    gc.collect(1)
    gc.freeze()


def _time_full(phase: str, info: dict[str, int]) -> None:
    """Count the full collections that last longer than :data:`LONG`.

    In :data:`gc.callbacks` while a state watches; called in whichever
    thread collects, with the GIL held, so one collection at a time.
    """
    global _long, _started
    if info["generation"] != 2:
        return
    if phase == "start":
        _started = time.perf_counter()
    elif time.perf_counter() - _started > LONG:
        _long += 1


class Freezer:
    """Freezes one state's objects: now, then at least every :data:`FREEZE_EVERY`.

    *on* True freezes from the start; False never; None watches: it starts
    freezing at the first revision after a full collection longer than
    :data:`LONG`. Made when the state is loaded; used on the state's loop
    only, and closed (:meth:`close`) when the state has stopped.
    """

    __slots__ = ("_at", "_seen")

    def __init__(self, on: bool | None, revision: int) -> None:
        global _watching
        self._at: int | None = None  # the revision of the last freeze
        self._seen: int | None = None  # watching: ``_long`` when it began
        if on:
            self._start(revision)  # the loaded tree: never scanned by full collections
        elif on is None:
            with _open_lock:
                if _watching == 0:
                    gc.callbacks.append(_time_full)
                _watching += 1
                self._seen = _long

    def _start(self, revision: int) -> None:
        global _open
        self._stop_watching()
        with _open_lock:
            _open += 1
        self._at = revision
        _freeze()

    def _stop_watching(self) -> None:
        global _watching
        if self._seen is None:
            return
        self._seen = None
        with _open_lock:
            _watching -= 1
            if _watching == 0:
                gc.callbacks.remove(_time_full)

    def close(self) -> None:
        """The state stopped: the last one open that froze unfreezes (once).

        What stays frozen while another such state runs waits for it to close.
        """
        global _open
        self._stop_watching()
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
            _freeze()

    def advance(self, revision: int, *, now: bool = False) -> None:
        """The tree reached *revision*: freeze if it is time (or *now*, a snapshot).

        A state that watches starts freezing here once a full collection
        lasted longer than :data:`LONG`.
        """
        at = self._at
        if at is None:
            if self._seen is not None and self._seen != _long:
                logger.info(
                    "a full garbage collection lasted over %.0f ms: this state "
                    "in memory now keeps its objects out of them (gc.freeze); "
                    "freeze_gc=False turns this off",
                    LONG * 1000,
                )
                self._start(revision)
        elif now or revision - at >= FREEZE_EVERY:
            self._at = revision
            _freeze()


def freezes_in_memory(choice: bool | None, tree: JSON) -> bool | None:
    """Whether a state in memory freezes: True, False, or None (it watches).

    *choice*, or (None) True when *tree* is large, else None: it starts
    freezing once a full collection lasts too long (see :class:`Freezer`).
    Counting stops at :data:`LARGE`: a big tree costs no more than that to judge.
    """
    if choice is not None:
        return choice
    return True if json_size(tree, LARGE) >= LARGE else None
