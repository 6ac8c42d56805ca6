"""Calls from plain threads into one event loop, at the cost of one hand-off.

anyio's blocking portal runs each call as a task of its own, in a cancel
scope, answered through a ``concurrent.futures.Future``: about 150 us a call
here, where handing an item to another thread and back costs about 40 us.
The :class:`~stateward.Store` makes every call from a thread, so it uses
this instead for its reads and writes:

* :class:`ThreadSignal` is a :class:`~stateward.actors._mailbox.Signal` that
  a *thread* waits on: the state actor sets it as it sets any sender's
  signal, and setting it releases a lock the thread is blocked on. A Store
  write is a request in the actor's mailbox like any other; only who waits
  for the answer differs.
  A durable write's thread is woken once the persister takes its commit,
  to write and sync the journal record itself (:meth:`ThreadSignal.enlist`, and
  ``Persister.help``): the thread was to be woken anyway, and the hop to
  the persister's worker thread and back is saved.
* :class:`LoopCaller` schedules a plain function on the loop (asyncio's
  ``call_soon_threadsafe``, trio's ``run_sync_soon``) and blocks the calling
  thread until it ran: no task, no future.

What needs to await (subscribing, a read that waits for the journal) still
goes through the portal.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, ClassVar, Final

from .._errors import StateClosedError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["LoopCaller", "ThreadSignal", "current_scheduler"]

_POLL: Final = 1.0  # seconds between checks that the loop is still running


class ThreadSignal:
    """A one-shot signal that one thread (not a task) waits on.

    Set on the event loop's thread, waited on by another: ``set`` releases a
    lock the waiter blocks on. A blocked thread cannot be cancelled, so it
    is never :meth:`abandoned`.

    Before it is set, the signal may be woken to *help* (:meth:`enlist`):
    the blocked thread runs a job for the state (writing its own journal
    record) and goes back to waiting, in :meth:`block`.
    """

    __slots__ = ("_flag", "_help", "_lock")
    by_thread: ClassVar[bool] = True

    def __init__(self) -> None:
        self._flag = False
        self._help: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._lock.acquire()

    def is_set(self) -> bool:
        return self._flag

    def abandoned(self) -> bool:
        return False

    def set(self) -> None:
        """Release the waiting thread; idempotent, from any thread.

        The persister's worker thread may set it (the record is on disk)
        while the loop refuses it (the actor stops): the second release of
        such a race finds the lock released already, and that is fine.
        """
        if not self._flag:
            self._flag = True
            with contextlib.suppress(RuntimeError):  # released by the other side
                self._lock.release()

    def enlist(self, job: Callable[[], None]) -> None:
        """Wake the waiting thread to run *job*, then wait on.

        What *job* raises, :meth:`block` raises in the waiting thread.
        Called once, on the loop's thread, before :meth:`set`. Should the
        signal be set before the thread wakes, the job is skipped: whoever
        set it had no more need of it.
        """
        self._help = job
        with contextlib.suppress(RuntimeError):  # released by a set() already
            self._lock.release()

    async def wait(self) -> None:  # pragma: no cover - a thread waits, not a task
        raise RuntimeError("a ThreadSignal is waited on by a thread: block()")

    def block(self, running: Callable[[], bool]) -> None:
        """Block this thread until set (running the job it is enlisted for).

        Raises:
            StateClosedError: *running()* turned False before the signal was
                set (the loop's thread is gone).
        """
        while True:
            if not self._lock.acquire(timeout=_POLL):
                if not running():
                    raise StateClosedError("the Store was closed")
                continue
            if self._flag:
                return
            job, self._help = self._help, None
            if job is not None:
                job()  # (it may set the signal: the next acquire returns)


def current_scheduler() -> Callable[[Callable[[], object]], object]:
    """The running loop's "run this soon", callable from any thread.

    asyncio's ``call_soon_threadsafe`` or trio's ``run_sync_soon``; call it
    in a task of that loop.
    """
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_task():
        schedule: Callable[[Callable[[], object]], object]
        schedule = trio.lowlevel.current_trio_token().run_sync_soon
        return schedule
    return asyncio.get_running_loop().call_soon_threadsafe


class LoopCaller:
    """Run plain functions on one event loop's thread, from other threads.

    Made on the loop's thread (:meth:`here`); :meth:`call` and :meth:`submit`
    may then be called from any other thread.
    """

    __slots__ = ("_pending", "_schedule", "_scheduled", "_thread", "running")

    def __init__(
        self,
        schedule: Callable[[Callable[[], object]], object],
        thread: threading.Thread,
    ) -> None:
        self._schedule = schedule
        self._thread = thread.ident
        self.running: Callable[[], bool] = thread.is_alive
        """Whether the loop's thread still runs."""
        # Calls waiting for the loop, and whether it was woken for them: one
        # wake-up for every call that arrives before the loop drains them
        # (waking a loop blocked in epoll costs more than the call itself).
        self._pending: deque[Callable[[], object]] = deque()
        self._scheduled = False

    @classmethod
    def here(cls) -> LoopCaller:
        """The caller for the loop running this task (asyncio or trio)."""
        return cls(current_scheduler(), threading.current_thread())

    def submit(self, fn: Callable[[], object]) -> None:
        """Schedule *fn()* on the loop and return at once.

        *fn* must not raise: on trio an exception there would end the run.

        Raises:
            RuntimeError: Called on the loop's own thread.
            StateClosedError: The loop has stopped.
        """
        if threading.get_ident() == self._thread:
            raise RuntimeError(
                "a Store call cannot be made from its own event loop's thread"
            )
        self._pending.append(fn)  # atomic: any thread
        if self._scheduled:
            return  # the loop was woken and has not drained yet: it will run fn
        self._scheduled = True
        try:
            self._schedule(self._drain)
        except RuntimeError:  # asyncio: loop closed; trio: RunFinishedError
            raise StateClosedError("the Store was closed") from None

    def _drain(self) -> None:
        # Cleared before counting: a call added after this line schedules a
        # drain of its own, or is counted below; either way it runs.
        self._scheduled = False
        pending = self._pending
        # Only the calls here now. One that arrives meanwhile waits for its
        # own drain, behind whatever these calls made ready (a reaction, a
        # subscriber, the persister): a Store call may apply its action right
        # here (_Core.apply_now), and threads calling without pause must not
        # keep every other task of the loop waiting.
        for _ in range(len(pending)):
            pending.popleft()()

    def call(self, fn: Callable[..., Any], *args: object) -> Any:
        """Run *fn(*args)* on the loop, block until it returned, return that.

        Raises what *fn* raised.
        """
        signal = ThreadSignal()
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - carried to the caller
                outcome.append(_Raised(exc))
            finally:
                signal.set()

        self.submit(run)
        signal.block(self.running)
        result = outcome[0]
        if isinstance(result, _Raised):
            raise result.exc
        return result


class _Raised:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
