"""Writing the journal: whichever thread needs it first, one at a time, in order.

The state actor queues each batch's :class:`Commit` here (and each rotation
of the journal's segment that a snapshot asks for), in revision order, on
the event loop. Writing them is file work, done in a thread: the
persister's worker thread does it for async senders, and a
:class:`~stateward.Store` call whose record is queued does it itself, in
the thread that called, since that thread waits for the disk anyway. Its
write carries whatever else is queued (a group commit). That spares a
durable Store call the hand-off to a worker thread, which then had to wake
the caller: one wake-up of another thread in three, and the turns of the
loop that handed the record over.

One lock makes the writers take turns; the queue's order is the file's
order; a rotation is done by whichever writer reaches it. The event loop
only appends (never blocks), and closes the journal when the state ends
(after the write in progress, if a thread is in one); the persister still
answers the async senders and passes the events on, commit by commit, on
the loop, once written.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._requests import _Request
    from .persistence import Journal
    from .subscriber import Outbox

__all__ = ["Commit", "JournalWriter", "Rotation"]


class Commit:
    """One batch of the state actor: its records, waiting senders and events."""

    __slots__ = ("blob", "fsync", "outbox", "owned", "requests", "revision", "written")

    def __init__(
        self,
        records: list[bytes],
        requests: list[_Request],
        outbox: Outbox,
        revision: int,
    ) -> None:
        self.blob = b"".join(records)
        self.fsync = any(r.wait == 2 for r in requests)
        self.requests = requests
        self.outbox = outbox
        self.revision = revision
        self.written = False  # set by the thread that wrote it
        self.owned = False  # a Store call's thread was handed it to write

    def refuse(self, error: Exception) -> None:
        """Answer every sender still waiting with *error*; give up the events."""
        for request in self.requests:
            if not request.done.is_set():
                request.error = error
                request.done.set()
        for sub, delivery in self.outbox:
            delivery.receipt._give_up(sub.name)


class Rotation:
    """Start a new segment after *revision*: the old one is synced and closed."""

    __slots__ = ("revision", "written")

    def __init__(self, revision: int) -> None:
        self.revision = revision
        self.written = False


class JournalWriter:
    """The journal's queue of commits and rotations, and the turn to write it.

    :meth:`put` on the event loop; :meth:`write_through` from any thread
    but the loop's (it blocks while another thread writes); :meth:`close`
    once no commit is left to write.
    """

    __slots__ = (
        "_lock",
        "_on_failed",
        "_on_rotated",
        "_on_written",
        "_pending",
        "closed",
        "commits",
        "error",
        "fsync_all",
        "fsyncs",
        "journal",
    )

    def __init__(
        self,
        journal: Journal,
        fsync_all: bool,
        on_written: Callable[[list[Commit], bool], None],
        on_rotated: Callable[[int], None],
        on_failed: Callable[[], None],
    ) -> None:
        self.journal = journal
        self.fsync_all = fsync_all
        self._on_written = on_written  # (commits, fsynced), in the writing thread
        self._on_rotated = on_rotated  # (revision synced), in the writing thread
        self._on_failed = on_failed  # once error is set, in the writing thread
        self._pending: deque[Commit | Rotation] = deque()
        self._lock = threading.Lock()
        self.error: OSError | None = None  # the first failure: nothing more is written
        self.closed = False
        self.commits = 0
        self.fsyncs = 0

    def put(self, item: Commit | Rotation) -> None:
        """Queue *item* behind everything queued (the event loop's thread)."""
        self._pending.append(item)

    def write_through(self, item: Commit | Rotation) -> bool:
        """Write what is queued up to *item* (unless done); True once written.

        False: it cannot be (a write failed, :attr:`error`; or the journal
        is closed); the persister refuses it on the loop.
        """
        with self._lock:
            while True:
                if item.written:
                    return True
                if self.error is not None or self.closed or not self._pending:
                    return False
                self._write_next()

    def close(self) -> None:
        """Close the journal once the writer in progress is done (any thread)."""
        with self._lock:
            self.closed = True
            self.journal.close()

    def _write_next(self) -> None:
        # Under the lock. What is popped was written (or failed for good):
        # an exception in between (a Ctrl-C in the main thread) leaves the
        # queue and the file as they were, or both as written.
        pending = self._pending
        while pending and pending[0].written:
            pending.popleft()  # marked, then interrupted before the pop
        if not pending:
            return
        head = pending[0]
        if type(head) is Rotation:
            try:
                self.journal.open_segment(head.revision + 1)
            except OSError as exc:
                self._fail(exc)
                return
            head.written = True
            pending.popleft()
            self._on_rotated(head.revision)
            return
        group: list[Commit] = []
        for i in range(len(pending)):  # by index: the loop may append meanwhile
            commit = pending[i]
            if type(commit) is not Commit:
                break
            group.append(commit)
        blob = b"".join([c.blob for c in group]) if len(group) > 1 else group[0].blob
        fsync = self.fsync_all or any(c.fsync for c in group)
        journal = self.journal
        before = journal.size
        done = False
        try:
            if blob or fsync:
                journal.commit(blob, fsync)  # cut back to *before* if it raises
            done = True
        except OSError as exc:
            self._fail(exc)
        finally:
            if done or journal.size != before:
                for commit in group:
                    commit.written = True
                    pending.popleft()
                if blob or fsync:
                    self.commits += 1
                    self.fsyncs += fsync
                self._on_written(group, fsync)

    def _fail(self, exc: OSError) -> None:
        self.error = exc
        self._on_failed()
