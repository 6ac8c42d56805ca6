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
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections import deque
from typing import TYPE_CHECKING, Final

import anyio

from .._errors import DurabilityError
from ._handoff import ThreadSignal, current_scheduler
from ._journal_writer import JournalWriter
from ._requests import Commit
from .persistence import ADAPTIVE_SNAPSHOT_EVERY, _fork, dumps_bytes
from .persistence._compact import can_spawn, has_room, spawn as spawn_rebuild
from .persistence._fork import ForkedBody, start as fork_serialise
from .subscriber import deliver, deliver_nowait

if TYPE_CHECKING:
    from ..tree import Tree
    from ._core import _Core
    from .persistence import Journal, PersistenceConfig
    from .subscriber import Outbox

__all__ = ["WAIT_FOR", "Persister"]

logger = logging.getLogger(__name__)

WAIT_FOR: Final = {"none": 0, "flush": 1, "fsync": 2}
_QUEUE: Final = 16  # commits in flight before the state actor waits
# How long this task waits for a thread enlisted to write its own commit
# before it writes the commit itself (the thread may have been interrupted
# before it got there; either way the record is written exactly once).
HELP_WAIT: Final = 0.05
# With snapshot_child="auto", a snapshot is rebuilt by a new process once the
# tree or the process is large enough for a fork to pause the state: a
# previous snapshot this large (about 50,000 leaves; a new process costs
# about 0.25 s of another core's time to start), or a fork of this process
# that paused its caller this long.
REPLAY_FROM_BYTES: Final = 1 << 20
REPLAY_FROM_PAUSE: Final = 0.005
# Rebuilds that fail in a row before snapshots and checkpoints are forked
# instead, for the rest of the state's run: one failure may be passing (a
# file retention removed meanwhile), three are not.
REBUILD_ATTEMPTS: Final = 3


class _SnapshotOrder:
    __slots__ = ("body", "error", "read", "replay", "revision")

    def __init__(self, revision: int, body: bytes | None, replay: bool = False) -> None:
        self.revision = revision
        self.body = body  # None while a child serialises it
        # Rebuilt from the files by a new process, once the journal holds
        # the revision (persistence._compact).
        self.replay = replay
        self.error: OSError | None = None
        self.read = anyio.Event()  # set once body (or error) is there
        if body is not None:
            self.read.set()

    async def collect(
        self,
        child: ForkedBody,
        limiter: anyio.CapacityLimiter,
        timeout: float | None,
    ) -> None:
        """Read what *child* serialises, from the start (killed at *timeout*).

        The sooner the child exits, the sooner the parent stops paying
        copy-on-write for the pages it shares with it.
        """
        try:
            self.body = await child.collect(limiter, timeout)
        except OSError as exc:
            self.error = exc
        finally:
            self.read.set()


class Persister:
    """Owns the journal while the state actor runs; one per actor."""

    def __init__(
        self, core: _Core, journal: Journal, config: PersistenceConfig
    ) -> None:
        self.core = core
        self.journal = journal
        self.config = config
        self.fsync_all = config.durability == "fsync"
        # Its own tokens for worker threads: the journal never waits for the
        # application's to_thread calls (anyio's default limiter, 40 tokens,
        # is shared by the whole program). One for the journal's writes and
        # fsyncs (one at a time anyway), one for the snapshot in progress.
        self.journal_limiter = anyio.CapacityLimiter(1)
        self.snapshot_limiter = anyio.CapacityLimiter(2)
        self.tx, self.rx = anyio.create_memory_object_stream[Commit | _SnapshotOrder](
            _QUEUE
        )
        self.inflight: deque[Commit] = deque()
        self.writer = JournalWriter(journal, self.fsync_all, self._committed)
        self._schedule = current_scheduler()
        self.durable_revision = core.tree.revision
        # Fsynced, not only written: each record carries it (see encode_record).
        self.synced_revision = core.tree.revision
        self._durable_changed: anyio.Event | None = None  # made by a reader
        self.last_snapshot = journal.snapshot_revision
        self.last_snapshot_time = anyio.current_time()
        self.snapshot_busy = False
        self._snapshot_idle = anyio.Event()
        self._snapshot_idle.set()
        # Snapshots may be rebuilt by a new process (see PersistenceConfig),
        # until REBUILD_ATTEMPTS of them fail in a row: forked from then on.
        self.replay = config.snapshot_child != "fork" and can_spawn()
        self.rebuild_failures = 0
        self.finished = anyio.Event()
        self.snapshots = 0

    # -- the state actor's side ---------------------------------------------

    async def submit(self, commit: Commit) -> None:
        """Queue *commit* for the journal; wait only while the queue is full."""
        if self.has_room():
            self.submit_nowait(commit)  # (send() would take a turn of the loop)
            return
        self.inflight.append(commit)
        self.writer.queue(commit)
        await self.tx.send(commit)  # (full: waits; ended: raises as it did)

    def has_room(self) -> bool:
        """Whether :meth:`submit_nowait` may be called now (this task still runs)."""
        # The stream holds at most the commits in flight and one snapshot order.
        return not self.finished.is_set() and len(self.inflight) + 2 <= _QUEUE

    def submit_nowait(self, commit: Commit) -> None:
        """:meth:`submit`, where :meth:`has_room` said so (not awaiting)."""
        self.inflight.append(commit)
        self.writer.queue(commit)
        self.tx.send_nowait(commit)

    def snapshot_due(self, revision: int) -> bool:
        if (
            self.snapshot_busy
            or self.core.failed is not None
            or revision < self.journal.segment_first  # nothing since the rotation
        ):
            return False
        since = revision - self.last_snapshot
        every = self.config.snapshot_every
        if every is not None:
            if since >= every:
                return True
        elif since >= ADAPTIVE_SNAPSHOT_EVERY and (
            self.journal.bytes_since_snapshot() >= self.journal.snapshot_bytes
        ):
            return True
        interval = self.config.snapshot_interval
        return (
            interval is not None
            and anyio.current_time() - self.last_snapshot_time >= interval
        )

    async def submit_snapshot(self, tree: Tree) -> None:
        # Ordered here, between two batches, so that it is exactly this
        # revision. A new process rebuilds it from the files once the journal
        # holds the revision (the actor goes on at once, and does not even
        # pause for a fork), or a forked child serialises it; without either,
        # it is serialised here. The file work happens off the event loop.
        self.snapshot_busy = True
        self.last_snapshot_time = anyio.current_time()
        self._snapshot_idle = anyio.Event()
        in_child = self.config.snapshot_in_child
        replay = in_child and self.rebuilds()
        child = fork_serialise(tree.root) if in_child and not replay else None
        self.core.freezer.advance(tree.revision, now=True)
        if replay or child is not None:
            order = _SnapshotOrder(tree.revision, None, replay)
        else:
            order = _SnapshotOrder(tree.revision, _snapshot_body(tree))
        self.writer.queue(order)
        if child is not None:
            self.core.tg.start_soon(
                order.collect,
                child,
                self.snapshot_limiter,
                self.config.snapshot_timeout,
                name="stateward snapshot",
            )
        await self.tx.send(order)

    def rebuilds(self) -> bool:
        """Whether a snapshot or checkpoint now is rebuilt by a new process.

        Or forked (see ``PersistenceConfig.snapshot_child``).
        """
        if not self.replay:
            return False
        if self.config.snapshot_child == "replay":
            return True
        return (
            self.journal.snapshot_bytes >= REPLAY_FROM_BYTES
            or _fork.last_pause >= REPLAY_FROM_PAUSE
        ) and has_room()

    async def finish(self) -> None:
        """Drain every commit, wait for a snapshot in progress, write a last one."""
        self.tx.close()
        await self.finished.wait()
        await self._snapshot_idle.wait()
        tree = self.core.tree
        if self.core.failed is None and tree.revision > self.last_snapshot:
            await self._write_snapshot(tree.revision, _snapshot_body(tree))

    def abandon(self, error: Exception) -> None:
        """The actor ends abnormally: refuse every sender still waiting.

        A thread enlisted to write (:meth:`help`) writes nothing after this.
        """
        self.writer.stopped = True
        for commit in self.inflight:
            commit.refuse(error)
        self.inflight.clear()
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
            carry: Commit | _SnapshotOrder | None = None
            while True:
                item = carry if carry is not None else await self._take()
                carry = None
                if item is None:
                    return
                if isinstance(item, _SnapshotOrder):
                    await self._rotate(item)
                    continue
                group = [item]
                while True:
                    try:
                        more = self.rx.receive_nowait()
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                    if isinstance(more, _SnapshotOrder):
                        carry = more
                        break
                    group.append(more)
                await self._commit(group)
        finally:
            self.rx.close()
            self.tx.close()
            self.finished.set()

    async def _take(self) -> Commit | _SnapshotOrder | None:
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
                self.inflight.popleft()  # (abandon() may have emptied it meanwhile)
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

    async def _rotate(self, order: _SnapshotOrder) -> None:
        if self.core.failed is not None:
            self._snapshot_done()
            return
        try:
            await anyio.to_thread.run_sync(
                self.writer.end_segment, order, limiter=self.journal_limiter
            )
        except OSError as exc:
            self._fail(exc)
            self._snapshot_done()
            return
        self.synced_revision = order.revision  # open_segment synced the old one
        self.core.tg.start_soon(self._snapshot_task, order, name="stateward snapshot")

    async def _snapshot_task(self, order: _SnapshotOrder) -> None:
        try:
            if order.replay:
                await self._rebuild(order)
            await order.read.wait()
            if order.body is None:
                # As a failed write: the journal still holds every record.
                logger.warning(
                    "snapshot of revision %s failed: %s", order.revision, order.error
                )
                return
            await self._write_snapshot(order.revision, order.body)
        finally:
            self._snapshot_done()

    async def _rebuild(self, order: _SnapshotOrder) -> None:
        """Have a new process rebuild *order* from the files (journal ended at it).

        A process that cannot start or fails is a failed snapshot (the
        journal holds every record; see :meth:`rebuild`).
        """
        try:
            order.body = await self.rebuild(
                order.revision, self.snapshot_limiter, self.config.snapshot_timeout
            )
        except OSError as exc:
            order.error = exc
        finally:
            order.read.set()

    async def rebuild(
        self,
        revision: int,
        limiter: anyio.CapacityLimiter | None,
        timeout: float | None,
        *,
        checkpoint: bool = False,
    ) -> bytes:
        """The tree at *revision* encoded by a new process, from the files.

        Once the journal holds *revision* (:meth:`wait_durable`). As a
        snapshot's body, or with *checkpoint* as a checkpoint's tree. In a
        task of the state's loop; cancelled, the process is killed.

        Raises:
            OSError: It could not start, failed or took over *timeout*
                seconds; logged. After :data:`REBUILD_ATTEMPTS` such
                failures in a row, :meth:`rebuilds` says False from then on
                (forks instead).
        """
        child = spawn_rebuild(self.config.state_dir, revision, checkpoint=checkpoint)
        try:
            if child is None:
                raise OSError("could not start a process to rebuild it")
            body = await child.collect(limiter, timeout)
        except OSError as exc:
            self.rebuild_failures += 1
            then = "tried again next time"
            if self.rebuild_failures >= REBUILD_ATTEMPTS:
                self.replay = False
                then = "snapshots and checkpoints are forked from now on"
            logger.warning(
                "the tree at revision %s could not be rebuilt in a new process "
                "(%s); %s",
                revision,
                exc,
                then,
            )
            raise
        self.rebuild_failures = 0
        return body

    def _snapshot_done(self) -> None:
        self.snapshot_busy = False
        self._snapshot_idle.set()

    async def _write_snapshot(self, revision: int, body: bytes) -> None:
        def write() -> None:
            self.journal.write_snapshot(revision, body)
            self.journal.retain()

        try:
            await anyio.to_thread.run_sync(write, limiter=self.snapshot_limiter)
        except OSError as exc:
            # The journal still holds every record: a failed snapshot costs
            # recovery time, not data. The temp file is gone already.
            logger.warning("snapshot of revision %s failed: %s", revision, exc)
            return
        self.last_snapshot = revision
        self.snapshots += 1


def _snapshot_body(tree: Tree) -> bytes:
    # Serialized between two batches, so that it is exactly this revision.
    return dumps_bytes(tree.root)
