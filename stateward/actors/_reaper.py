"""Large values a state lets go of, freed a slice at a time on its loop.

When the last reference to a tree goes, CPython frees every object in it
at once, in whichever step drops it last (the history's, 1,000 revisions
later by default): 0.3 s for the two million-leaf trees a checkpoint load
leaves behind (the tree it replaced, and the copy its event carried), 80 ms
for a million-member table deleted (the tree hands over every large
container a write replaces or deletes: ``Tree.dropped``).

The :class:`Reaper` keeps a reference to such a value. Once it holds the
only one (``sys.getrefcount``), nothing else can reach the value, and it
takes it apart a slice at a time between the actor's steps, so that no
single step pays for all of it. A container inside that something else
still holds (an event's old value, say) is only let go, never changed.

A stopped state has no loop left: its tree, readable through the handle
for as long as the program keeps it, is handed once nothing reaches it to
one background thread of the process (:func:`free_in_background`), which
takes it apart the same way while other states run.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Final

import anyio

from ._running import RUNNING

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from .._json import JSON

__all__ = ["Reaper", "free_in_background", "take_apart"]

SLICE: Final = 2_000
"""Members taken out per slice (about 1 ms)."""

PAUSE: Final = 0.001
"""Seconds between two slices."""

_FEW: Final = 64
"""A container of at most this many scalars is freed at once."""

_ALONE: Final = 2
"""``sys.getrefcount`` of a value held by one reference only: that one and
the call's own argument."""

_counts = getattr(sys, "getrefcount", None)  # (CPython: the Reaper needs it)


class Reaper:
    """Frees what it was given once it alone holds it, a slice at a time.

    Used on the state's loop only: :meth:`hold` a value the state is letting
    go of (the first one starts :meth:`run` as a task of the state), and
    call :meth:`after_step` after each step (it then looks whether it may
    start). What it still holds when the state stops is dropped with it.
    """

    __slots__ = ("_running", "_tg", "_wake", "held")

    def __init__(self, tg: TaskGroup) -> None:
        self.held: list[Any] = []  # containers, each to take apart
        self._wake = anyio.Event()
        self._tg = tg  # the state's: :meth:`run` starts there when first needed
        self._running = False

    def hold(self, value: JSON) -> None:
        """Keep *value* until it may be taken apart (now, or when others let go)."""
        t = type(value)
        if _counts is None or (t is not dict and t is not list):
            return  # (a scalar costs nothing to free)
        if any(v is value for v in self.held):
            return  # (held twice, it would never be held by one alone)
        self.held.append(value)
        self._wake.set()
        if not self._running:
            self._running = True
            self._tg.start_soon(self.run, name="stateward reaper")

    def after_step(self, dropped: list[JSON] | None) -> None:
        """After the state's step: hold what it *dropped* (cleared), look again.

        A step may have let go of a held value (the history's oldest
        revision, say), and its tree may have dropped large containers.
        """
        if dropped:
            for value in dropped:
                self.hold(value)
            dropped.clear()
        if self.held:
            self._wake.set()

    async def run(self) -> None:
        """Take apart, a slice at a time, what is held by nothing else."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            going = bool(self.held) and self.slice()
            while going:
                # A rest, not just a turn: the loop's thread then waits in its
                # selector, without the GIL, and the state's worker threads
                # (the journal's) run. Slices back to back starved them: a
                # persisted state's sends waited for the whole of it.
                await anyio.sleep(PAUSE)
                going = bool(self.held) and self.slice()

    def slice(self, budget: int = SLICE) -> bool:
        """Take out up to *budget* members; False if everything held is shared."""
        return take_apart(self.held, budget)


class _Background:
    """One daemon thread of the process that frees what it is given, in slices."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[list[Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def put(self, held: list[Any]) -> None:
        """Hand *held* over; the thread starts with the first.

        Safe in a finalizer, which may run inside this very call (a garbage
        collection while the thread is made): it never blocks on the lock.
        Whoever holds the lock starts the thread, which finds *held* queued.
        """
        self._queue.put(held)
        if self._thread is None and self._lock.acquire(blocking=False):
            try:
                if self._thread is None:
                    thread = threading.Thread(
                        target=self._run, name="stateward reaper", daemon=True
                    )
                    thread.start()
                    self._thread = thread
            finally:
                self._lock.release()

    def _run(self) -> None:
        while True:
            held = self._queue.get()
            while take_apart(held, SLICE // 4):
                # A rest, without the GIL, after each slice: the running
                # states' threads go first.
                time.sleep(PAUSE)
            held.clear()
            del held


_BACKGROUND: Final = _Background()


def free_in_background(box: list[Any]) -> None:
    """Free what *box* alone holds: a slice at a time in a thread, beside a state.

    For a stopped state's tree once nothing reaches it any more
    (``Tree.when_gone``), in whichever thread let go of it last, or a
    closed ``Store``'s, at once. While
    another state of the process runs, the values are moved to one
    background thread, which takes them apart a slice at a time with a
    rest between slices: freed by one call, a million leaves would stop
    every other thread for about 0.1 s. Otherwise they go at once.
    Empties *box*; thread-safe.
    """
    held = box[:]
    box.clear()
    if held and RUNNING.any():
        _BACKGROUND.put(held)


def take_apart(held: list[Any], budget: int = SLICE) -> bool:
    """Take up to *budget* members out of what *held* alone holds.

    False if nothing could be taken out: everything in *held* is shared
    (or *held* is empty).
    """
    done = 0
    i = len(held) - 1
    while i >= 0 and done < budget:
        if _counts(held[i]) > _ALONE:  # type: ignore[misc]  # not None here
            i -= 1  # still reachable from elsewhere: wait
            continue
        node = held[i]
        while node and done < budget:
            if type(node) is dict:
                _, child = node.popitem()
            else:
                child = node.pop()
            done += 1
            t = type(child)
            if (t is dict or t is list) and child:
                deep = len(child) > _FEW
                if not deep:
                    for member in child.values() if t is dict else child:
                        m = type(member)
                        if m is dict or m is list:
                            deep = True
                            break
                # (the local variable and the argument: nothing else)
                if deep and _counts(child) <= _ALONE:  # type: ignore[misc]
                    held.append(child)  # taken apart next
                    del child
                    break
            # Anything else goes now: a scalar, a few scalars in a
            # container, or what something else still holds (theirs).
            del child
        if not node:
            del held[i]
        del node
        i = len(held) - 1
    return done > 0
