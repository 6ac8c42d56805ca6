"""The persistence task: group commit, then answers and events, in order.

The state actor applies a batch in memory and submits one commit: the batch's
journal records, the senders that wait for the disk, and the batch's
deliveries to subscribers. This task takes every commit waiting at that
moment, writes their records with one ``write`` and (if any of them needs it)
one ``fsync`` in a worker thread, and only then answers those senders and
passes the deliveries on, commit by commit, so that subscribers still see
revisions in order and no event describes a change a crash could undo.

A thread blocked on a commit (a :class:`~stateward.Store` call) is woken
when this task takes its group, to write the group itself
(:meth:`Persister.help`): the thread was to be woken anyway, so a durable
``Store`` call pays one wake-up of the loop and one of its own thread
around the fsync, not the extra hops to a worker thread and back (and the
worker no longer races the loop for the GIL as it releases the caller).
Either way the :class:`~._journal_writer.JournalWriter` writes each record
once and in order; this task answers and delivers, commit by commit, once
a commit is written.

A snapshot ordered by the actor travels in the same queue: this task ends
the journal's segment there, and :class:`~._snapshots.Snapshots` (when one
is due, who makes it, its file) takes it from there.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections import deque
from typing import TYPE_CHECKING, Final

import anyio

from .._errors import DurabilityError
from ._delivery import deliver, deliver_nowait
from ._handoff import ThreadSignal, current_scheduler
from ._journal_writer import JournalWriter
from ._requests import Commit
from ._snapshots import SnapshotOrder, Snapshots

if TYPE_CHECKING:
    from ..tree import Tree
    from ._core import _Core
    from ._delivery import Outbox
    from .persistence import Journal, PersistenceConfig

__all__ = ["WAIT_FOR", "Persister"]

logger = logging.getLogger(__name__)

WAIT_FOR: Final = {"none": 0, "flush": 1, "fsync": 2}
# Commits in flight before the state actor waits for the journal, or the
# bytes of their records, whichever comes first. The journal stops taking
# commits while a snapshot's segment begins (three fsyncs, and under
# "flush" or "none" the old segment's unsynced tail): the room lets the
# actor go on meanwhile, as the disk allows, rather than stop every few
# sends. (16 commits stopped sequential sends for 2-5 ms at each snapshot.)
_QUEUE: Final = 1024
_QUEUE_BYTES: Final = 32 << 20
# How long this task waits for a thread enlisted to write its own commit
# before it writes the commit itself (the thread may have been interrupted
# before it got there; either way the record is written exactly once).
HELP_WAIT: Final = 0.05


class Persister:
    """Owns the journal while the state actor runs; one per actor."""

    def __init__(
        self, core: _Core, journal: Journal, config: PersistenceConfig
    ) -> None:
        self.core = core
        self.journal = journal
        self.config = config
        self.fsync_all = config.durability == "fsync"
        # Its own token for a worker thread: the journal never waits for the
        # application's to_thread calls (anyio's default limiter, 40 tokens,
        # is shared by the whole program). The journal's writes and fsyncs
        # take one at a time anyway.
        self.journal_limiter = anyio.CapacityLimiter(1)
        self.snapshots = Snapshots(core, journal, config)
        self.tx, self.rx = anyio.create_memory_object_stream[Commit | SnapshotOrder](
            _QUEUE
        )
        self.inflight: deque[Commit] = deque()
        self.inflight_bytes = 0  # of their records
        # Set as commits leave, when the actor waits for room.
        self._room_made: anyio.Event | None = None
        self.writer = JournalWriter(journal, self.fsync_all, self._committed)
        self._schedule = current_scheduler()
        self.durable_revision = core.tree.revision
        # Fsynced, not only written: each record carries it (see encode_record).
        self.synced_revision = core.tree.revision
        self._durable_changed: anyio.Event | None = None  # made by a reader
        self.finished = anyio.Event()

    # -- the state actor's side ---------------------------------------------

    async def submit(self, commit: Commit) -> None:
        """Queue *commit* for the journal; wait only while the queue is full.

        Full: :data:`_QUEUE` commits in flight, or :data:`_QUEUE_BYTES` of
        their records (a commit that would pass it is queued, the next waits).
        """
        if self.has_room():
            self.submit_nowait(commit)  # (send() would take a turn of the loop)
            return
        while self.inflight_bytes >= _QUEUE_BYTES and not self.finished.is_set():
            if self._room_made is None:
                self._room_made = anyio.Event()
            await self._room_made.wait()
        self.inflight.append(commit)
        self.inflight_bytes += len(commit.blob)
        self.writer.queue(commit)
        await self.tx.send(commit)  # (full: waits; ended: raises as it did)

    def has_room(self) -> bool:
        """Whether :meth:`submit_nowait` may be called now (this task still runs)."""
        # The stream holds at most the commits in flight and one snapshot order.
        return (
            len(self.inflight) + 2 <= _QUEUE
            and self.inflight_bytes < _QUEUE_BYTES
            and not self.finished.is_set()
        )

    def submit_nowait(self, commit: Commit) -> None:
        """:meth:`submit`, where :meth:`has_room` said so (not awaiting)."""
        self.inflight.append(commit)
        self.inflight_bytes += len(commit.blob)
        self.writer.queue(commit)
        self.tx.send_nowait(commit)

    def _took(self, commit: Commit) -> None:
        """*commit* is no longer in flight: the actor may have room again."""
        self.inflight.popleft()
        self.inflight_bytes -= len(commit.blob)
        self._tell_room()

    def _tell_room(self) -> None:
        if self._room_made is not None:
            self._room_made.set()
            self._room_made = None

    def snapshot_due(self, revision: int) -> bool:
        """Whether a snapshot of *revision* is due (:meth:`Snapshots.due`)."""
        return self.snapshots.due(revision)

    async def submit_snapshot(self, tree: Tree) -> None:
        """Order a snapshot of *tree* now, in the journal's order."""
        order = self.snapshots.order(tree)
        self.writer.queue(order)
        await self.tx.send(order)

    async def finish(self) -> None:
        """Drain every commit, wait for a snapshot in progress, write a last one."""
        self.tx.close()
        await self.finished.wait()
        await self.snapshots.finish()

    def abandon(self, error: Exception) -> None:
        """The actor ends abnormally: refuse every sender still waiting.

        A thread enlisted to write (:meth:`help`) writes nothing after this.
        """
        self.writer.stopped = True
        for commit in self.inflight:
            commit.refuse(error)
        self.inflight.clear()
        self.inflight_bytes = 0
        self._tell_room()
        self.tx.close()

    def close(self) -> None:
        """Close the journal once no thread writes to it (the state has stopped)."""
        self.writer.close()

    async def wait_durable(self, revision: int) -> None:
        """Wait until every record up to *revision* is committed (or it failed)."""
        while self.durable_revision < revision:
            if self.core.failed is not None:
                raise self.core.failed
            event = self._durable_changed
            if event is None:
                event = self._durable_changed = anyio.Event()
            await event.wait()

    # -- the persistence task ------------------------------------------------

    async def run(self) -> None:
        try:
            carry: Commit | SnapshotOrder | None = None
            while True:
                item = carry if carry is not None else await self._take()
                carry = None
                if item is None:
                    return
                if isinstance(item, SnapshotOrder):
                    await self._rotate(item)
                    continue
                group = [item]
                while True:
                    try:
                        more = self.rx.receive_nowait()
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                    if isinstance(more, SnapshotOrder):
                        carry = more
                        break
                    group.append(more)
                await self._commit(group)
        finally:
            self.rx.close()
            self.tx.close()
            self.finished.set()
            self._tell_room()

    async def _take(self) -> Commit | SnapshotOrder | None:
        """The next item, without a turn of the loop when one is queued; None: ended."""
        try:
            return self.rx.receive_nowait()
        except anyio.WouldBlock:
            pass
        except anyio.EndOfStream:
            return None
        try:
            return await self.rx.receive()
        except anyio.EndOfStream:
            return None

    async def _commit(self, group: list[Commit]) -> None:
        if self.core.failed is None:
            last = group[-1]
            if not last.written:
                await self._let_a_thread_write(group)
            if not last.written and not self.writer.write_here(group):
                try:
                    await anyio.to_thread.run_sync(
                        self.writer.write_through, last, limiter=self.journal_limiter
                    )
                except OSError as exc:
                    self._fail(exc)
        failed = self.core.failed  # (this task's, or a helping thread's)
        blocked: Outbox = []
        self._wake_readers()
        if failed is None:
            # Events first, then the senders, then what waits for room: as the
            # state actor does (see _Core.loop).
            blocked = deliver_nowait([d for commit in group for d in commit.outbox])
        for commit in group:
            if failed is None:
                for request in commit.requests:
                    request.done.set()
            else:
                commit.refuse(failed)
            if self.inflight and self.inflight[0] is commit:
                self._took(commit)  # (abandon() may have emptied it meanwhile)
        if failed is not None:
            return
        await deliver(blocked)
        self.core.released = group[-1].revision
        if self.core.taps:
            self.core.tap()

    async def _let_a_thread_write(self, group: list[Commit]) -> None:
        """Have a thread blocked on *group*, if any, write it (:meth:`help`).

        The thread is woken here, as this task is about to wait, rather
        than when the commit was queued: it then finds the GIL free instead
        of waiting for the rest of the actor's step and of this task's. If
        it has not reported back after :data:`HELP_WAIT`, this task writes
        the group itself (whatever the thread has written is skipped).
        """
        for commit in group:
            for request in commit.requests:
                done = request.done
                if isinstance(done, ThreadSignal) and not done.is_set():
                    helped = anyio.Event()
                    done.enlist(functools.partial(self.help, group[-1], helped))
                    with anyio.move_on_after(HELP_WAIT):
                        await helped.wait()
                    return

    def help(self, last: Commit, helped: anyio.Event) -> None:
        """Write the unwritten commits up to *last*, then set *helped*.

        Run by a :class:`~stateward.Store` call's own thread, woken for it
        (:meth:`_let_a_thread_write`). A failed write or fsync is kept for
        this task, which fails the state with it and refuses the commits;
        a snapshot order on the way (the journal's next segment) is left to
        this task too. Either way the thread then waits for its answer. An
        interrupt (``KeyboardInterrupt``) propagates to the call, after
        *helped* is set: this task then writes what is left, once.
        """
        try:
            self.writer.write_through(last, helping=True)
        except OSError:
            pass  # (kept by the writer: this task fails the state with it)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop has stopped
                self._schedule(helped.set)

    def _committed(self, group: list[Commit], fsync: bool) -> None:
        """*group* is written: say so, and release its threads (writer's lock held).

        Setting a thread's signal twice is harmless. Async senders are
        answered on the loop, as their signals belong to it.
        """
        revision = group[-1].revision
        # Plain assignments, monotonic (one writer at a time): a read on the
        # loop may see the new revision before this task resumes, correctly.
        self.durable_revision = revision
        if fsync:
            self.synced_revision = revision
        for commit in group:
            for request in commit.requests:
                if request.done.by_thread:
                    request.done.set()

    def _wake_readers(self) -> None:
        event, self._durable_changed = self._durable_changed, None
        if event is not None:
            event.set()

    def _fail(self, exc: OSError) -> None:
        message = (
            f"the journal in {self.config.state_dir} could not be written or synced "
            f"({exc}); nothing more is accepted until the state is opened again"
        )
        logger.error("%s", message)
        self.writer.stopped = True
        self.core.failed = DurabilityError(message)
        self.core.failed.__cause__ = exc
        self._wake_readers()

    async def _rotate(self, order: SnapshotOrder) -> None:
        if self.core.failed is not None:
            self.snapshots.done()
            return
        try:
            await anyio.to_thread.run_sync(
                self.writer.end_segment, order, limiter=self.journal_limiter
            )
        except OSError as exc:
            self._fail(exc)
            self.snapshots.done()
            return
        self.synced_revision = order.revision  # open_segment synced the old one
        self.snapshots.take(order)
