"""The state actor's mailbox, and the event loop's own events.

A send costs one wake-up of its sender, and this module is why. anyio's
memory streams are general: a sender blocked on a full stream is woken when
its item is taken, and only then waits for the actor's answer (two wake-ups),
and every ``anyio.Event()`` finds its backend again (about 2 us on asyncio,
as much as the rest of a send's bookkeeping). Here:

* :func:`current_backend` picks the running loop's own primitives once, when
  the actor starts: ``asyncio.Event`` or ``trio.Event``, and its
  ``checkpoint_if_cancelled``. Their cancellation semantics are anyio's (anyio
  builds its events on exactly these).
* :class:`Mailbox` is a bounded FIFO with one receiver. A request that finds
  no room is *parked*: its sender goes straight to waiting for the answer,
  and the receiver moves parked requests into the mailbox, in arrival order,
  as it takes work out. A parked request that is withdrawn (its sender was
  cancelled) never entered the mailbox and is never applied.

Everything here runs on the event loop's thread; nothing is thread-safe.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from typing import TYPE_CHECKING, Generic, NamedTuple, Protocol, TypeVar

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["Backend", "LoopEvent", "Mailbox", "current_backend"]

_T = TypeVar("_T")


class LoopEvent(Protocol):
    """What stateward needs of an event: ``asyncio.Event`` and ``trio.Event`` fit."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    async def wait(self) -> object: ...


class Backend(NamedTuple):
    """The running event loop's own primitives, found once per actor."""

    name: str
    new_event: Callable[[], LoopEvent]
    checkpoint_if_cancelled: Callable[[], Awaitable[None]]


def current_backend() -> Backend:
    """Return the primitives of the event loop running this task.

    anyio runs on asyncio or on trio; trio is the one whose run is active
    when ``trio.lowlevel.in_trio_task()`` says so.
    """
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_task():
        return Backend("trio", trio.Event, trio.lowlevel.checkpoint_if_cancelled)
    return Backend("asyncio", asyncio.Event, anyio.lowlevel.checkpoint_if_cancelled)


class Mailbox(Generic[_T]):
    """A bounded FIFO with one receiver, where senders beyond the bound park.

    Not thread-safe: every call comes from the event loop's thread. Items are
    taken in the order they were offered, parked ones included.
    """

    __slots__ = ("_new_event", "_parked", "_queue", "_waiter", "closed", "size")

    def __init__(self, size: int, new_event: Callable[[], LoopEvent]) -> None:
        self.size = size
        self.closed = False
        self._new_event = new_event
        self._queue: deque[_T] = deque()
        self._parked: deque[_T] = deque()
        self._waiter: LoopEvent | None = None

    def __len__(self) -> int:
        """Items in the mailbox (parked ones not counted)."""
        return len(self._queue)

    @property
    def parked(self) -> int:
        """Items waiting for room."""
        return len(self._parked)

    def put_nowait(self, item: _T) -> bool:
        """Queue *item* if there is room and nobody is parked before it.

        Returns:
            Whether *item* entered the mailbox. False: call :meth:`park`.

        Raises:
            anyio.ClosedResourceError: The mailbox was closed.
        """
        if self.closed:
            raise anyio.ClosedResourceError
        if len(self._queue) >= self.size or self._parked:
            return False
        self._queue.append(item)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()
        return True

    def park(self, item: _T) -> None:
        """Queue *item* behind the others waiting for room.

        Raises:
            anyio.ClosedResourceError: The mailbox was closed.
        """
        if self.closed:
            raise anyio.ClosedResourceError
        self._parked.append(item)

    def withdraw(self, item: _T) -> bool:
        """Take a parked *item* back; False when it entered the mailbox already."""
        try:
            self._parked.remove(item)
        except ValueError:
            return False
        return True

    def take(self, limit: int) -> list[_T]:
        """Take up to *limit* items, oldest first, then let parked ones in."""
        queue = self._queue
        if len(queue) <= limit:
            items = list(queue)
            queue.clear()
        else:
            items = [queue.popleft() for _ in range(limit)]
        parked = self._parked
        while parked and len(items) < limit:
            items.append(parked.popleft())
        while parked and len(queue) < self.size:
            queue.append(parked.popleft())
        return items

    async def wait(self) -> None:
        """Wait until the mailbox holds an item; at once when it does already."""
        if not self._queue:
            waiter = self._waiter = self._new_event()
            await waiter.wait()

    def close(self) -> list[_T]:
        """Refuse every further item; return the queued and parked ones, in order."""
        self.closed = True
        items = [*self._queue, *self._parked]
        self._queue.clear()
        self._parked.clear()
        return items
