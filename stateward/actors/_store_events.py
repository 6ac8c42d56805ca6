"""The Store's events: subscribers, watches, derived values, reactions, checkpoints.

:class:`StoreEvents` is the part of :class:`~stateward.Store` that reaches
past one read or write: each method wraps its async counterpart on the
state's own event loop thread and blocks until it is done.
"""

from __future__ import annotations

import contextlib
import functools
import queue
from typing import TYPE_CHECKING, Any, final

import anyio

from .._errors import StateClosedError
from ..messages.acks import RAS
from ..messages.events import Progress
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


class StoreEvents:
    """Subscribe, watch, derive, track and checkpoint, as blocking calls.

    A base of :class:`~stateward.Store` (not used alone): every method may be
    called from any thread.
    """

    _state: StateHandle
    _portal: BlockingPortal
    _closed: bool

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

        The callback runs in a worker thread, one event at a time, in revision
        order; it may call this Store. Returns a function that unsubscribes.
        Unnamed subscribers are named after the callback, made unique.

        Raises:
            DuplicateNameError: *name* is taken.
        """
        subscribe = functools.partial(
            self._state.subscribe, pattern, _sync_handler(callback), name=name
        )
        subscription = self._call(subscribe)

        def unsubscribe() -> None:
            with contextlib.suppress(StateClosedError):  # closed already: nothing to do
                self._call(subscription.unsubscribe)

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
        events: queue.Queue[StateChanged | Resync] = queue.Queue(maxsize=1)

        async def pump() -> None:
            feed = self._state.watch(
                pattern, from_revision=from_revision, mailbox_size=mailbox_size
            )
            async with contextlib.aclosing(feed) as changes:
                async for event in changes:
                    if not isinstance(event, Progress):
                        await anyio.to_thread.run_sync(events.put, event)

        future = self._call_soon(pump)
        try:
            while True:
                try:
                    item = events.get(timeout=0.1)
                except queue.Empty:
                    if future.done():
                        future.result()  # raises what ended the feed
                        return
                    continue
                yield item
        finally:
            future.cancel()
            with contextlib.suppress(queue.Empty):
                events.get_nowait()  # a pump blocked on the full queue goes

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


def _sync_handler(callback: Callable[[StateChanged | Resync], object]) -> Any:
    async def handler(event: StateChanged | Resync) -> int:
        # In a worker thread: the callback may block, or call the Store back.
        await anyio.to_thread.run_sync(callback, event)
        return RAS.SUCCESS

    # The state actor names an unnamed subscriber after its handler.
    handler.__qualname__ = getattr(callback, "__qualname__", "callback")
    return handler
