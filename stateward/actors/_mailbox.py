"""The state actor's mailbox, and the event loop's own events.

A send costs one wake-up of its sender, and this module is why. anyio's
memory streams are general: a sender blocked on a full stream is woken when
its item is taken, and only then waits for the actor's answer (two wake-ups),
and every ``anyio.Event()`` finds its backend again (about 2 us on asyncio,
as much as the rest of a send's bookkeeping). Here:

* :func:`current_backend` picks the running loop's own primitives once, when
  the actor starts: its event (``asyncio.Event`` or ``trio.Event``, for any
  number of waiters) and a :class:`Signal` for one waiter.
* A :class:`Signal` is what a sender waits on for its answer. It also tells
  whether its waiter was cancelled before it was set (:meth:`Signal.abandoned`):
  the state actor skips such a request, so a send cancelled before the actor
  took it is never applied, and that covers a send made in an already
  cancelled scope too (see :attr:`Backend.settle`): no
  ``checkpoint_if_cancelled`` per send.
* :class:`Mailbox` is a bounded FIFO with one receiver. A request that finds
  no room is *parked*: its sender goes straight to waiting for the answer,
  and the receiver moves parked requests into the mailbox, in arrival order,
  as it takes work out.

Everything here runs on the event loop's thread; nothing is thread-safe.
"""

from __future__ import annotations

import asyncio
import sys
from collections import OrderedDict, deque
from functools import partial
from typing import TYPE_CHECKING, ClassVar, Generic, NamedTuple, Protocol, TypeVar

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["Backend", "LoopEvent", "Mailbox", "Signal", "current_backend"]

_T = TypeVar("_T")


class LoopEvent(Protocol):
    """What stateward needs of an event: ``asyncio.Event`` and ``trio.Event`` fit."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    async def wait(self) -> object: ...


class Signal(LoopEvent, Protocol):
    """A one-shot event that one task waits on, at most once.

    Its wait is a checkpoint and is cancelled as anyio cancels any wait.
    """

    by_thread: ClassVar[bool]
    """Whether its waiter is a thread, not a task (a Store call): then it
    may be set from any thread, and the wait is never cancelled."""

    def abandoned(self) -> bool:
        """Whether the waiter was cancelled before the signal was set."""
        ...


class Backend(NamedTuple):
    """The running event loop's own primitives, found once per actor."""

    new_event: Callable[[], LoopEvent]
    """An event any number of tasks may wait on."""
    new_signal: Callable[[], Signal]
    """An event one task waits on."""
    settle: Callable[[], Awaitable[None]] | None
    """What the state actor awaits before taking requests, or None.

    A send made in an already cancelled scope must not be applied. On trio,
    a wait in a cancelled scope is aborted before any other task runs, so
    the signal is abandoned before the actor can take its request. On
    asyncio, anyio delivers such a cancellation by a callback scheduled when
    ``cancel()`` was called, which a state actor already scheduled to run
    could beat; one more turn of the loop (``sleep(0)``) before each take
    lets every such callback run first. That costs one loop turn per batch
    instead of a ``checkpoint_if_cancelled`` (a walk up the cancel scopes,
    about 1.8 us) per send."""


class _AsyncioSignal:
    """A :class:`Signal` on asyncio: one bare future, made on wait.

    ``asyncio.Event`` keeps a deque of waiters and checks its loop on every
    wait; one waiter needs neither. A cancelled waiter leaves its future
    cancelled (``Task.cancel`` cancels the future it awaits, at once), which is
    how :meth:`abandoned` knows, whichever task runs first afterwards.

    Made by :func:`current_backend`'s factory, which found the loop once:
    no ``get_running_loop()`` (with a ``getpid()`` system call on CPython
    3.11) per send. Futures still come from ``loop.create_future()``, so a
    third-party loop supplies its own.
    """

    __slots__ = ("_create_future", "_flag", "_future")
    by_thread: ClassVar[bool] = False

    def __init__(self, create_future: Callable[[], asyncio.Future[None]]) -> None:
        self._flag = False
        self._create_future = create_future
        self._future: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._flag

    def abandoned(self) -> bool:
        future = self._future
        return future is not None and future.cancelled()

    def set(self) -> None:
        if not self._flag:
            self._flag = True
            future = self._future
            if future is not None and not future.done():
                future.set_result(None)

    async def wait(self) -> None:
        if self._flag:
            await asyncio.sleep(0)  # a checkpoint all the same
            return
        assert self._future is None, "a Signal has one waiter, once"
        future = self._future = self._create_future()
        await future
        self._future = None  # set: only a cancelled future needs keeping


def current_backend() -> Backend:
    """Return the primitives of the event loop running this task.

    anyio runs on asyncio or on trio; trio is the one whose run is active
    when ``trio.lowlevel.in_trio_task()`` says so.
    """
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_task():
        from ._trio import TrioSignal

        return Backend(trio.Event, TrioSignal, None)
    create_future = asyncio.get_running_loop().create_future
    return Backend(
        asyncio.Event, partial(_AsyncioSignal, create_future), anyio.lowlevel.checkpoint
    )


class Mailbox(Generic[_T]):
    """A bounded FIFO with one receiver, where senders beyond the bound park.

    Not thread-safe: every call comes from the event loop's thread. Items are
    taken in the order they were offered, parked ones included.
    """

    __slots__ = ("_new_signal", "_parked", "_queue", "_waiter", "closed", "size")

    def __init__(self, size: int, new_signal: Callable[[], Signal]) -> None:
        self.size = size
        self.closed = False
        self._new_signal = new_signal
        self._queue: deque[_T] = deque()
        # Ordered, with O(1) removal: any number of parked senders may be
        # cancelled at once, and each withdraws its own item.
        self._parked: OrderedDict[_T, None] = OrderedDict()
        self._waiter: Signal | None = None

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
            Whether *item* entered the mailbox (False: full, or somebody is
            parked before it).

        Raises:
            anyio.ClosedResourceError: The mailbox was closed.
        """
        if self.closed:
            raise anyio.ClosedResourceError
        if len(self._queue) >= self.size or self._parked:
            return False
        self._queue.append(item)
        self.wake()
        return True

    def put(self, item: _T) -> None:
        """Queue *item*, or park it behind the others waiting for room.

        The receiver lets parked items in, in order, as it takes work out.

        Raises:
            anyio.ClosedResourceError: The mailbox was closed.
        """
        if not self.put_nowait(item):
            self._parked[item] = None

    def withdraw(self, item: _T) -> bool:
        """Take *item* back if it is still parked, in O(1).

        An item already in the mailbox stays there: skipping it is the
        receiver's business (the state actor skips abandoned requests), and
        searching the mailbox would cost O(mailbox_size) per withdrawal.
        """
        try:
            del self._parked[item]
        except KeyError:
            return False
        return True

    def any(self, predicate: Callable[[_T], bool]) -> bool:
        """Whether an item, parked ones included, satisfies *predicate*.

        Stops at the first that does.
        """
        return any(map(predicate, self._queue)) or any(map(predicate, self._parked))

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
            items.append(parked.popitem(last=False)[0])
        while parked and len(queue) < self.size:
            queue.append(parked.popitem(last=False)[0])
        return items

    async def wait(self) -> None:
        """Wait until the mailbox holds an item; at once when it does already."""
        if not self._queue:
            waiter = self._waiter = self._new_signal()
            await waiter.wait()

    def wake(self) -> None:
        """Wake the receiver's :meth:`wait` (also when the mailbox is empty)."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    def close(self) -> list[_T]:
        """Refuse every further item; return the queued and parked ones, in order."""
        self.closed = True
        items = [*self._queue, *self._parked]
        self._queue.clear()
        self._parked.clear()
        return items
