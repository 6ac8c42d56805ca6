"""The revision feed of a handle: watch, replay from the files, at_revision.

:class:`HandleFeed` is the part of :class:`~stateward.StateHandle` that
reaches back in time: resuming a feed from a revision (from the history
ring, else rebuilt from snapshot + journal), iterating over changes, and
the tree as it was at a revision. A base class, never used alone.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Final

import anyio

from .._checks import check_int, check_seconds
from .._errors import CompactedError, CorruptStateError, InvalidActionError, short_repr
from ..messages.events import Progress, Resync, StateChanged
from ..paths import PathLike, PatternTrie, format_path, parse_pattern
from ._history import undo_in_slices
from ._large_reads import read_value
from .persistence import FeedEntry, oldest_snapshot, replay_files

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable

    from .._changes import Change
    from .._json import JSON
    from ..paths import Segments
    from ..tree import Tree
    from ._core import _Core
    from ._handler import Handler
    from ._subscription import Subscription

__all__ = ["HandleFeed"]

_FEED_SLICE: Final = 1_000
"""Ring entries made into feed entries between two turns of the loop."""


class HandleFeed:
    """Watching, resuming and reading the past of a state (a base class)."""

    __slots__ = ()

    _core: _Core

    if TYPE_CHECKING:

        async def subscribe(
            self,
            pattern: PathLike,
            handler: Handler,
            *,
            name: str | None = None,
            mailbox_size: int = 64,
            from_revision: int | None = None,
        ) -> Subscription: ...

        async def wait_durable(self, revision: int | None = None) -> int: ...

    async def _older_feed(
        self, since: int, pattern: Segments | None = None, upto: int | None = None
    ) -> tuple[list[FeedEntry], int]:
        """What the ring no longer holds after *since*, rebuilt from the files.

        Returns the entries and the revision they were rebuilt up to, when
        the ring covers the rest (then the caller adds its subscriber
        without yielding: nothing can fall in between), or once they reach
        *upto* (the journal is then read no further). Given a subscriber's
        *pattern*, only the revisions that may reach it are kept: a long
        journal's other changes are let go as they are rebuilt, instead of
        piling up for the garbage collector to walk again and again (its
        full collections stopped every thread for up to 0.25 s over 200,000
        revisions).
        """
        core = self._core
        entries: list[FeedEntry] = []
        after = since
        keep = None if pattern is None else _related(pattern)
        # The tree at *after*, rebuilt from the files: the next round (the
        # state moved on meanwhile) replays the journal on it, and it is
        # freed in slices at the end (a million leaves freed at once would
        # stop the loop for about 0.1 s).
        tree: Tree | None = None
        try:
            for _ in range(8):
                oldest = core.history.oldest(core.tree.revision)
                if after >= oldest or (upto is not None and after >= upto):
                    return entries, after
                persister = core.persister
                if persister is None:
                    raise CompactedError(since, oldest)
                await persister.wait_durable(oldest)  # the files hold up to there
                until = persister.durable_revision
                if upto is not None:
                    until = min(until, upto)
                directory = persister.config.state_dir
                replay = functools.partial(
                    replay_files,
                    store_id=persister.journal.store_id,
                    keep=keep,
                    freeze=core.freezer.freeze,
                )
                try:
                    tree, got = await anyio.to_thread.run_sync(
                        replay, directory, after, until, tree
                    )
                except (CorruptStateError, OSError):
                    raise await self._compacted(since) from None
                entries.extend(got)
                after = until
        finally:
            if tree is not None:
                self._let_go(tree.root)
        # The state moved faster than the files could be read, eight times.
        raise CompactedError(since, core.history.oldest(core.tree.revision))

    def _tap(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call *callback* (it must not block) whenever changes are released.

        Released: applied, committed (persisted states) and handed to the
        subscribers. Returns the function that removes the tap.
        """
        taps = self._core.taps
        taps.append(callback)
        return lambda: taps.remove(callback)

    def _let_go(self, value: JSON) -> None:
        """Free *value*, a large tree read from the files, in slices.

        Call it on the state's loop, as the last holder of *value*: the
        state's reaper takes it apart between its steps (a million leaves
        freed at once, in any thread, would stop the loop for about 0.1 s).
        Once the state has stopped, *value* is simply dropped.
        """
        core = self._core
        if core.finished.is_set():
            return
        with contextlib.suppress(RuntimeError):  # (its task group has ended)
            core.reaper.hold(value)

    @property
    def _released(self) -> int:
        """Every change up to this revision is released (see :meth:`_tap`)."""
        return self._core.released

    async def _changes_after(self, after: int, until: int) -> list[FeedEntry]:
        """The changes of revisions *after* + 1 .. *until* (<= released), oldest first.

        From the history ring, else rebuilt from the files (persisted states).

        Raises:
            CompactedError: Neither reaches back to *after*.
        """
        core = self._core
        older, start = (
            await self._older_feed(after, upto=until) if after < until else ([], after)
        )
        entries = older  # (after + 1 .. start: replay_files stops at until)
        # The ring's, as it holds them now (it moves on meanwhile), made a
        # slice per turn of the loop: a window of 100,000 made at once
        # stopped the state for a third of a second.
        rows = core.history.rows_since(start, until)
        for i in range(0, len(rows), _FEED_SLICE):
            if i:
                await anyio.lowlevel.checkpoint()
            entries.extend(
                FeedEntry(revision, action.id, action.source, action.payload, changes)
                for revision, action, changes, _ in rows[i : i + _FEED_SLICE]
            )
        return entries

    async def watch(
        self,
        pattern: PathLike = "**",
        *,
        from_revision: int | None = None,
        progress: float | None = None,
        name: str | None = None,
        mailbox_size: int = 64,
    ) -> AsyncGenerator[StateChanged | Resync | Progress]:
        """Iterate over the changes matching *pattern*: the feed as a loop.

        ``async for event in state.watch("jobs.**", from_revision=r)`` gives
        every matching change after *r* (replayed from the history), then
        live ones, as :meth:`subscribe` does, one :class:`StateChanged` at a
        time. Without *from_revision* it starts at the revision current when
        the loop first asks for an event. With *progress* (seconds), an idle
        loop gets a :class:`Progress` naming a revision up to which it has
        seen everything, so a later resume misses nothing.

        Backpressure: the loop body runs at its own pace; while it is busy,
        up to *mailbox_size* deliveries wait, then the state actor waits up to
        a second (``Overflow.BLOCK``), then they are dropped and the loop gets
        one :class:`Resync` (never a silent gap). Leaving the loop (break,
        exception, cancellation) unsubscribes. *name* names its subscriber
        (default ``"watch <pattern>"``, made unique).

        Raises:
            CompactedError: *from_revision* is older than the history kept.
        """
        if progress is not None:
            check_seconds("progress", progress)
        send, receive = anyio.create_memory_object_stream[StateChanged | Resync](0)

        async def forward(event: StateChanged | Resync) -> int:
            await send.send(event)
            return 1

        # The handler's name is the subscriber's default name, made unique
        # where the subscriber is added (no await can come in between).
        forward.__qualname__ = f"watch {format_path(parse_pattern(pattern))}"
        subscription = await self.subscribe(
            pattern,
            forward,
            name=name,
            mailbox_size=mailbox_size,
            from_revision=from_revision,
        )
        sub = subscription._sub
        try:
            with receive:
                while True:
                    if progress is None:
                        yield await receive.receive()
                        continue
                    with anyio.move_on_after(progress):
                        event = await receive.receive()
                        yield event
                        continue
                    if sub.idle():
                        yield Progress(self._core.released)
        finally:
            with anyio.CancelScope(shield=True):
                await subscription.unsubscribe()
            send.close()

    async def at_revision(self, revision: int) -> JSON:
        """Return the whole tree as it was right after *revision* (a copy).

        From the history ring when it reaches back that far: the current tree
        with the newer changes undone, O(size of those changes + tree). On a
        persisted state, older revisions are rebuilt from the newest snapshot
        at or before *revision* plus the journal, in a worker thread.

        Raises:
            CompactedError: Neither the history nor the files reach back to
                *revision*.
            InvalidActionError: *revision* is negative or in the future.
        """
        await anyio.lowlevel.checkpoint()
        core = self._core
        current = core.tree.revision
        if type(revision) is not int or not 0 <= revision <= current:
            reason = f"must be an int in 0..{current} (got {short_repr(revision, 60)})"
            raise InvalidActionError("revision", reason)
        if revision >= core.history.oldest(current):
            # The tree now (a large one read without stopping the actor), then
            # the entries after *revision* undone, from the newest it holds.
            now, root = await read_value(core.tree, (), None, core.freezer.freeze)
            if revision >= core.history.oldest(core.tree.revision):
                # Taken as the ring holds them now (revisions are contiguous):
                # it moves on while they are undone, a slice per turn.
                rows = core.history.rows_since(revision, now)
                return await undo_in_slices(root, rows)
            # (the writes made during a long read pushed it out of the ring)
        persister = core.persister
        if persister is None:
            raise CompactedError(revision, core.history.oldest(current))
        await self.wait_durable(current)
        replay = functools.partial(replay_files, store_id=persister.journal.store_id)
        try:
            tree, _ = await anyio.to_thread.run_sync(
                replay, persister.config.state_dir, revision, revision
            )
        except (CorruptStateError, OSError):
            raise await self._compacted(revision) from None
        return tree.root

    async def _compacted(self, requested: int) -> CompactedError:
        """The error for *requested*: the oldest revision the ring or files reach."""
        core = self._core
        oldest = core.history.oldest(core.tree.revision)
        if core.persister is not None:
            directory = core.persister.config.state_dir
            on_disk = await anyio.to_thread.run_sync(oldest_snapshot, directory)
            if on_disk is not None:
                oldest = min(on_disk, oldest)
        return CompactedError(requested, oldest)


def _check_from_revision(core: _Core, from_revision: int) -> None:
    check_int("from_revision", from_revision, 0)
    current = core.tree.revision
    if from_revision > current:
        reason = f"{from_revision} is ahead of the state (revision {current})"
        raise InvalidActionError("from_revision", reason)


def _related(pattern: Segments) -> Callable[[list[Change]], bool]:
    """Whether a revision's changes may reach a subscriber of *pattern*.

    Asked of the routing's own trie: a change at a path that matches the
    pattern, below one (bubbling) or above one (replaced from above). Only
    what this says no to can be left out; the routing decides the rest
    (``stop_bubbling``, an unchanged value below).
    """
    trie: PatternTrie[bool] = PatternTrie()
    trie.add(pattern, True)
    match = trie.match

    def related(changes: list[Change]) -> bool:
        return any(match(change.path) for change in changes)

    return related
