"""A persisted state's snapshots: when one is due, who makes it, and its file.

The state actor orders a snapshot between two batches, so that it is exactly
the tree at that revision, and the persistence task ends the journal's
segment there. The tree's bytes then come from another process where one
can make them: a new interpreter that rebuilds the tree from the files
(:mod:`.persistence._compact`, no pause at all) or a forked child
(:mod:`.persistence._fork`, a pause for the fork); otherwise the actor
serialises it. A task writes the file off the loop (rule R3) and applies
the retention. One snapshot at a time; :class:`Snapshots` is the state's
record of them, used on the state's event loop only.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import anyio

from .persistence import ADAPTIVE_SNAPSHOT_EVERY, _fork, dumps_bytes
from .persistence._compact import can_spawn, has_room, spawn as spawn_rebuild
from .persistence._fork import ForkedBody, start as fork_serialise

if TYPE_CHECKING:
    from ..tree import Tree
    from ._core import _Core
    from .persistence import Journal, PersistenceConfig

__all__ = ["REBUILD_ATTEMPTS", "SnapshotOrder", "Snapshots"]

logger = logging.getLogger(__name__)

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


class SnapshotOrder:
    """One snapshot ordered: its revision, and its bytes once they are made.

    Queued in the journal's order (it ends a segment there).
    """

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


class Snapshots:
    """The snapshots of one running persisted state (its event loop only)."""

    def __init__(
        self, core: _Core, journal: Journal, config: PersistenceConfig
    ) -> None:
        self.core = core
        self.journal = journal
        self.config = config
        # Worker threads for the body's read and the file's write: its own,
        # so that a snapshot never waits for the application's to_thread
        # calls (anyio's default limiter is shared by the whole program).
        self.limiter = anyio.CapacityLimiter(2)
        self.last = journal.snapshot_revision
        self.last_time = anyio.current_time()
        self.busy = False
        self.idle = anyio.Event()
        self.idle.set()
        self.count = 0  # written since the state opened
        # Snapshots may be rebuilt by a new process (see PersistenceConfig),
        # until REBUILD_ATTEMPTS of them fail in a row: forked from then on.
        self.replay = config.snapshot_child != "fork" and can_spawn()
        self.rebuild_failures = 0
        # Processes reading the files to rebuild a tree (a checkpoint's may
        # run beside a snapshot's write): the retention, which removes
        # files, waits for none of them and is put off while any runs.
        self.rebuilding = 0
        self.retaining: anyio.Event | None = None  # set once it is over

    def due(self, revision: int) -> bool:
        """Whether a snapshot of *revision* is due (none under way)."""
        if (
            self.busy
            or self.core.failed is not None
            or revision < self.journal.segment_first  # nothing since the rotation
        ):
            return False
        since = revision - self.last
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
            interval is not None and anyio.current_time() - self.last_time >= interval
        )

    def order(self, tree: Tree) -> SnapshotOrder:
        """Order a snapshot of *tree* as it is now (between two batches).

        A new process rebuilds it from the files once the journal holds
        the revision (the actor goes on at once, and does not even pause
        for a fork), or a forked child serialises it now; without either,
        it is serialised here. The caller queues the order in the journal.
        """
        self.busy = True
        self.last_time = anyio.current_time()
        self.idle = anyio.Event()
        in_child = self.config.snapshot_in_child
        replay = in_child and self.rebuilds()
        child = fork_serialise(tree.root) if in_child and not replay else None
        self.core.freezer.advance(tree.revision, now=True)
        if not replay and child is None:
            return SnapshotOrder(tree.revision, dumps_bytes(tree.root))
        order = SnapshotOrder(tree.revision, None, replay)
        if child is not None:
            self.core.tg.start_soon(
                order.collect,
                child,
                self.limiter,
                self.config.snapshot_timeout,
                name="stateward snapshot",
            )
        return order

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

    def take(self, order: SnapshotOrder) -> None:
        """The journal's segment is ended at *order*: make and write its file."""
        self.core.tg.start_soon(self._write_when_made, order, name="stateward snapshot")

    async def finish(self) -> None:
        """Wait for a snapshot under way, then write a last one if due."""
        await self.idle.wait()
        tree = self.core.tree
        if self.core.failed is None and tree.revision > self.last:
            await self._write(tree.revision, dumps_bytes(tree.root))

    def done(self) -> None:
        """The snapshot under way is written, or given up: the next may come."""
        self.busy = False
        self.idle.set()

    async def rebuild(
        self,
        revision: int,
        limiter: anyio.CapacityLimiter | None,
        timeout: float | None,
        *,
        checkpoint: bool = False,
    ) -> bytes:
        """The tree at *revision* encoded by a new process, from the files.

        Once the journal holds *revision* (``Persister.wait_durable``). As a
        snapshot's body, or with *checkpoint* as a checkpoint's tree. In a
        task of the state's loop; cancelled, the process is killed.

        Raises:
            OSError: It could not start, failed or took over *timeout*
                seconds; logged. After :data:`REBUILD_ATTEMPTS` such
                failures in a row, :meth:`rebuilds` says False from then on
                (forks instead).
        """
        while self.retaining is not None:  # files it lists may go meanwhile
            await self.retaining.wait()
        self.rebuilding += 1
        try:
            child = spawn_rebuild(
                self.config.state_dir, revision, checkpoint=checkpoint
            )
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
        finally:
            self.rebuilding -= 1
        self.rebuild_failures = 0
        return body

    async def _write_when_made(self, order: SnapshotOrder) -> None:
        try:
            if order.replay:
                try:
                    order.body = await self.rebuild(
                        order.revision, self.limiter, self.config.snapshot_timeout
                    )
                except OSError as exc:
                    order.error = exc
                finally:
                    order.read.set()
            await order.read.wait()
            if order.body is None:
                # As a failed write: the journal still holds every record.
                logger.warning(
                    "snapshot of revision %s failed: %s", order.revision, order.error
                )
                return
            await self._write(order.revision, order.body)
        finally:
            self.done()

    async def _write(self, revision: int, body: bytes) -> None:
        journal = self.journal
        try:
            await anyio.to_thread.run_sync(
                journal.write_snapshot, revision, body, limiter=self.limiter
            )
        except OSError as exc:
            # The journal still holds every record: a failed snapshot costs
            # recovery time, not data. The temp file is gone already.
            logger.warning("snapshot of revision %s failed: %s", revision, exc)
            return
        self.last = revision
        self.count += 1
        if self.rebuilding:
            # A process is reading the older files: they stay until the
            # next snapshot's retention (or the last one's, at stop).
            return
        self.retaining = retaining = anyio.Event()
        try:
            await anyio.to_thread.run_sync(journal.retain, limiter=self.limiter)
        except OSError as exc:
            # Older files left behind: the next snapshot's retention tries.
            logger.warning(
                "files older than the snapshot of revision %s could not be removed: %s",
                revision,
                exc,
            )
        finally:
            self.retaining = None
            retaining.set()
