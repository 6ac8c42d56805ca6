"""The Store's events: subscribers, watches, derived values, reactions, checkpoints.

:class:`StoreEvents` is the part of :class:`~stateward.Store` that reaches
past one read or write: each method wraps its async counterpart on the
state's own event loop thread and blocks until it is done.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
from typing import TYPE_CHECKING, Any, final

import anyio

from .._checks import check_callable
from .._errors import StateClosedError
from ..messages.acks import RAS
from ..paths import format_path, parse_pattern
from ._handover import Handover
from .checkpoints import Checkpoints

if TYPE_CHECKING:
    import concurrent.futures
    import os
    from collections.abc import Callable, Iterator

    from anyio.from_thread import BlockingPortal

    from .._json import JSON
    from ..messages.events import Resync, StateChanged
    from ..paths import PathLike
    from ._track import Reader
    from .state import StateHandle

__all__ = ["StoreCheckpoints", "StoreEvents"]

logger = logging.getLogger(__name__)


class StoreEvents:
    """Subscribe, watch, derive, track and checkpoint, as blocking calls.

    A base of :class:`~stateward.Store` (not used alone): every method may be
    called from any thread.
    """

    _state: StateHandle
    _portal: BlockingPortal
    _closed: bool
    _runners: list[_CallbackThread]  # the subscribers' callback threads

    def _call(self, fn: Callable[..., Any], *args: object) -> Any:
        raise NotImplementedError  # pragma: no cover - the Store's

    def subscribe(
        self,
        callback: Callable[[StateChanged | Resync], object],
        pattern: PathLike = "",
        *,
        name: str | None = None,
    ) -> Callable[[], None]:
        """Call *callback(event)* for every change at or below *pattern*.

        The callback runs in a thread of its own (one per subscriber), one
        event at a time, in revision order; it may call this Store, and
        unsubscribe itself. Writers never wait for it: the state hands each
        event to the callback's thread and goes on. An exception in the
        callback is logged (``stateward.actors._store_events``) and the next
        event still comes. A callback more than 64 events behind pushes back
        as any slow subscriber does: the state waits for room (up to a
        second), then drops and hands it one ``Resync``. :meth:`close` lets
        it finish the events it was handed (up to 5 s). Returns a function
        that unsubscribes. Unnamed subscribers are named after the callback,
        made unique.

        Raises:
            DuplicateNameError: *name* is taken.
            InvalidActionError: *callback* is not callable.
        """
        check_callable("callback", callback)
        runner = _CallbackThread(callback)
        try:
            subscribe = functools.partial(
                self._state.subscribe, pattern, runner.handler, name=name
            )
            subscription = self._call(subscribe)
        except BaseException:
            runner.stop()
            raise
        self._runners.append(runner)

        def unsubscribe() -> None:
            with contextlib.suppress(StateClosedError):  # closed already: nothing to do
                self._call(subscription.unsubscribe)
            try:
                self._runners.remove(runner)
            except ValueError:
                return  # unsubscribed already (or the Store closed)
            runner.stop()

        return unsubscribe

    def watch(
        self,
        pattern: PathLike = "**",
        *,
        from_revision: int | None = None,
        mailbox_size: int = 64,
    ) -> Iterator[StateChanged | Resync]:
        """Iterate over the changes at *pattern*, blocking for each one.

        ``for event in store.watch("jobs.**", from_revision=r):`` gives every
        matching change after *r* (replayed from the history, or from the
        files of a persisted state), then live ones, without gap or
        duplicate, as :meth:`StateHandle.watch` does; a loop that falls
        behind by more than *mailbox_size* changes gets one ``Resync``.
        Leaving the loop (``break``, an exception, or ``close()`` on the
        iterator) unsubscribes. Each iterator belongs to one thread.

        Raises:
            CompactedError: *from_revision* is older than the history kept.
        """
        handoff = _EventQueue(1, f"watch {format_path(parse_pattern(pattern))}")
        subscription = self._call(
            functools.partial(
                self._state.subscribe,
                pattern,
                handoff,
                mailbox_size=mailbox_size,
                from_revision=from_revision,
            )
        )
        try:
            while True:
                try:
                    event = handoff.get(timeout=0.1)
                except queue.Empty:
                    if self._closed or self._state.closed:
                        return  # the Store was closed
                else:
                    assert event is not None  # nobody queues the end marker here
                    yield event
        finally:
            # Unsubscribed when this returns: no event is handed over after.
            handoff.stopped = True
            with contextlib.suppress(StateClosedError):
                self._call(subscription.unsubscribe)

    def derive(
        self, dest: PathLike, source: PathLike, fn: Callable[[JSON], object]
    ) -> None:
        """Keep ``dest = fn(value at source)`` up to date.

        As :meth:`StateHandle.derive`; *fn* runs in the state's own thread,
        between two actions: keep it quick and free of side effects.
        """
        self._call(self._state.derive, dest, source, fn)

    def underive(self, dest: PathLike) -> None:
        """Stop deriving *dest* (its last value stays)."""
        self._call(self._state.underive, dest)

    def track(self, fn: Callable[[Reader], object], *, name: str | None = None) -> Any:
        """Run ``fn(reader)`` now and whenever what it read changes.

        As :meth:`StateHandle.track`; *fn* runs in the state's own thread, so
        keep it quick. Returns once the first run is done; call
        ``store.untrack(reaction)`` to stop it.
        """
        return self._call(functools.partial(self._state.track, fn, name=name))

    def untrack(self, reaction: Any) -> None:
        """Stop a reaction made by :meth:`track`."""
        self._call(reaction.untrack)

    def checkpoints(
        self, directory: str | os.PathLike[str], *, keep: int | None = None
    ) -> StoreCheckpoints:
        """Checkpoints of this Store's tree and your objects.

        As :class:`Checkpoints`, with blocking calls.
        """
        make = functools.partial(_make_checkpoints, self._state, directory, keep)
        return StoreCheckpoints(self, self._call(make))

    def _call_soon(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        if self._closed:
            raise StateClosedError("the Store was closed")
        return self._portal.start_task_soon(fn)

    # -- files ----------------------------------------------------------------


async def _make_checkpoints(
    state: StateHandle, directory: str | os.PathLike[str], keep: int | None
) -> Checkpoints:
    return Checkpoints(state, directory, keep=keep)  # on the loop that runs it


@final
class StoreCheckpoints:
    """A :class:`Checkpoints` for synchronous code (see :meth:`Store.checkpoints`).

    ``register``, ``save``, ``load`` and ``list`` block until done; they may
    be called from any thread (saves and loads run one at a time).
    """

    def __init__(self, store: StoreEvents, inner: Checkpoints) -> None:
        self._store = store
        self._inner = inner

    def register(self, name: str, obj: Any) -> None:
        """Save and restore *obj* (``save_state``/``load_state``) as *name*."""
        self._inner.register(name, obj)

    def save(self, *, name: str | None = None) -> Any:
        """Save the tree and every registered object; return the checkpoint's info."""
        return self._store._call(functools.partial(self._inner.save, name=name))

    def load(self, path: str | os.PathLike[str] | None = None) -> Any:
        """Restore the tree and every registered object (the newest by default)."""
        return self._store._call(self._inner.load, path)

    def list(self) -> Any:
        """The complete checkpoints, oldest first."""
        return self._inner.list()


class _EventQueue(Handover):
    """Events a subscriber hands to one thread, in order; itself the handler.

    The state actor hands a delivery over with :meth:`offer` (no turn of
    the subscriber's task, no hop to a worker thread), and the Ack means
    the events were handed over. When the queue has no room (*size* events
    handed over and not yet taken), the delivery goes through the
    subscriber's mailbox, and the subscriber awaits this handler, which
    waits for room in a worker thread: a slow consumer pushes back as any
    slow subscriber does (the state waits, then drops and sends a
    ``Resync``). Once :attr:`stopped`, a wait for room gives up.

    A ``SimpleQueue`` (C, no lock of ours per event) and two counters make
    the bound: each counter is written by one thread only (``_put`` on the
    loop, by :meth:`offer` or the handler, or in the worker the handler
    waits for, never two at once: the subscriber offers nothing while its
    handler runs; ``_taken`` by the consumer), so neither loses an update,
    and their difference can only overstate what is queued, never
    understate it.
    """

    __slots__ = ("_items", "_put", "_room", "_size", "_taken", "_waiting", "stopped")

    def __init__(self, size: int, name: str) -> None:
        super().__init__(name)  # an unnamed subscriber's name
        # None: the end marker of a callback thread (never counted).
        self._items: queue.SimpleQueue[StateChanged | Resync | None] = (
            queue.SimpleQueue()
        )
        self._size = size
        self._put = 0
        self._taken = 0
        self._room = threading.Condition()
        self._waiting = False  # a handler waits for room: tell it on a take
        self.stopped = False

    def offer(self, events: tuple[StateChanged | Resync, ...]) -> bool:
        """Queue all of *events* if there is room for them, else none (False)."""
        if self._put - self._taken + len(events) > self._size:
            return False
        self._put += len(events)
        put = self._items.put
        for event in events:
            put(event)
        return True

    async def __call__(self, event: StateChanged | Resync) -> int:
        """Queue *event*, waiting for room in a worker thread if there is none."""
        if not self.offer((event,)):
            # Abandoned if cancelled (an unsubscribe): _put_when_room gives
            # up once stopped.
            await anyio.to_thread.run_sync(
                self._put_when_room, event, abandon_on_cancel=True
            )
        return RAS.SUCCESS

    def _put_when_room(self, event: StateChanged | Resync) -> None:
        with self._room:
            while not self.stopped:
                if self._put - self._taken < self._size:
                    self._put += 1
                    self._items.put(event)
                    return
                self._waiting = True
                self._room.wait(0.05)  # (a take that missed the flag: 50 ms)

    def get(self, timeout: float | None = None) -> StateChanged | Resync | None:
        """Take the next event, or the end marker (None), in the consumer's thread.

        Raises:
            queue.Empty: Nothing came within *timeout* seconds.
        """
        item = self._items.get(timeout=timeout)
        if item is not None:
            self._taken += 1
            if self._waiting:
                with self._room:
                    self._waiting = False
                    self._room.notify()
        return item

    def end(self) -> None:
        """Queue the end marker, behind every event handed over (never blocks)."""
        self._items.put(None)


class _CallbackThread:
    """Runs one Store subscriber's callback, event by event, in a thread of its own.

    Fed by an :class:`_EventQueue` of *size*; its :attr:`handler` is the
    subscriber's.
    """

    __slots__ = ("_callback", "_events", "_thread", "handler")

    def __init__(
        self, callback: Callable[[StateChanged | Resync], object], size: int = 64
    ) -> None:
        self._callback = callback
        name = getattr(callback, "__qualname__", "callback")
        self._events = _EventQueue(size, name)
        self.handler = self._events
        self._thread = threading.Thread(
            target=self._run, name=f"stateward callback {name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        take = self._events.get
        while (event := take()) is not None:
            try:
                self._callback(event)
            except BaseException:  # (SystemExit too: it would end this thread alone)
                logger.exception(
                    "a Store subscriber's callback %r raised on revision %s",
                    self._callback,
                    getattr(event, "revision", None),
                )

    def stop(self, timeout: float = 5.0) -> None:
        """Let the callback finish what is queued (up to *timeout* s), then end.

        From the callback itself (it unsubscribed), the thread ends once the
        events already queued are handled.
        """
        # A handler still waiting for room gives up first: nothing is queued
        # behind the end marker. Behind a callback that does not return, the
        # thread is left to itself after *timeout*.
        self._events.stopped = True
        self._events.end()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
