"""Who writes the journal: the queue of unwritten commits, and its lock.

The persistence task queues every commit of the state actor here, and the
snapshot orders that end a segment between them, in the order it takes
them. A commit is written by whichever thread gets there first with the
lock held: the persister's worker thread, or the thread of a
:class:`~stateward.Store` call blocked on it (``Persister.help``), which
was to be woken anyway. Whoever holds the lock takes the queue from the
front up to the commit it was asked for, so each record is written once
and in order, and only the persistence task ends a segment, once nothing
unwritten comes before it.

A commit is known by itself, not by its revision: a commit without
records (a durable send that changed nothing) has the revision of the one
before it.

A helping thread may be the main thread, where Python raises
``KeyboardInterrupt`` (or a signal handler's own exception) between any
two steps: after the records are written and before they are marked so,
say. Written again, they would be refused at recovery. So the writer
notes what it is about to write and the journal's size before it; the
next writer that finds that note looks at the size, which the journal
advances as the last step of a commit that stands (one that stops before
it is cut back), and marks the group written, or writes it again.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Protocol

from ._requests import Commit

if TYPE_CHECKING:
    from collections.abc import Callable

    from .persistence import Journal

__all__ = ["JournalWriter", "SegmentEnd"]


class SegmentEnd(Protocol):
    """A snapshot order in the queue: the segment ends after its revision."""

    revision: int


class JournalWriter:
    """Writes the queued commits to the journal, one thread at a time, in order.

    Concurrency: :meth:`queue` on the event loop's thread only;
    :meth:`write_through`, :meth:`end_segment` and :meth:`close` from any
    thread, one at a time under :attr:`lock` (they block for file work:
    never on the loop); :meth:`write_here` on the loop, without waiting.
    """

    def __init__(
        self,
        journal: Journal,
        fsync_all: bool,
        written: Callable[[list[Commit], bool], None],
    ) -> None:
        self.journal = journal
        self.fsync_all = fsync_all
        self._written = written  # called under the lock: (group, fsynced)
        # Queued, not yet written: appended on the loop, taken from the front
        # by the thread holding the lock.
        self.unwritten: deque[Commit | SegmentEnd] = deque()
        self.lock = threading.Lock()
        self.error: OSError | None = None  # a helping thread's failure
        # The group being written, the fsync asked and the journal's size
        # before: left behind if the writer was interrupted (see above).
        self.intent: tuple[list[Commit], bool, int] | None = None
        self.stopped = False  # failed or abandoned: helping threads write nothing
        self.commits = 0
        self.fsyncs = 0

    def queue(self, item: Commit | SegmentEnd) -> None:
        """Queue a commit, or the end of the segment (on the loop)."""
        self.unwritten.append(item)

    def write_through(self, last: Commit, helping: bool = False) -> None:
        """Write (and fsync) the unwritten commits up to *last*, in order.

        Blocks for the file work (never on the loop). A *helping* thread (a
        Store call's) stops at a segment end, which is the persistence
        task's, and writes nothing once the state failed, stopped or closed;
        its failure is kept (:attr:`error`) for the persistence task, whose
        next write raises it.

        Raises:
            OSError: The write or the fsync failed (the segment was cut back
                to what was accepted before), here or in a helping thread.
            RuntimeError: *last* is not in the queue before the next segment
                end: the persistence task would answer senders whose records
                were never written.
        """
        with self.lock:
            try:
                self._write_locked(last, helping)
            except OSError as exc:
                if helping:
                    self.error = exc
                raise

    def write_here(self, group: list[Commit]) -> bool:
        """Commit *group* on the loop if it needs no file work and the lock is free."""
        if (
            self.fsync_all
            or self.error is not None
            or any(c.blob or c.fsync for c in group)
        ):
            return False
        if not self.lock.acquire(blocking=False):
            return False
        try:
            self._write_locked(group[-1], helping=False)
        finally:
            self.lock.release()
        return True

    def _write_locked(self, last: Commit, helping: bool) -> None:
        if self.error is not None:
            raise self.error
        if self.intent is not None:
            self._settle()
        if last.written:
            return
        if helping and (self.stopped or self.journal.fd is None):
            return
        unwritten = self.unwritten
        group: list[Commit] = []
        for i in range(len(unwritten)):  # (indexed: the loop may append meanwhile)
            item = unwritten[i]
            if not isinstance(item, Commit):
                break  # a segment end
            group.append(item)
            if item is last:
                break
        if not group or group[-1] is not last:
            if helping:
                return  # a segment end first: the persistence task's
            msg = "the journal's queue does not hold the commit to write"
            raise RuntimeError(msg)
        blob = b"".join(c.blob for c in group)
        fsync = self.fsync_all or any(c.fsync for c in group)
        self.intent = (group, fsync, self.journal.size)
        if blob or fsync:
            self.journal.commit(blob, fsync)
            self.commits += 1
            self.fsyncs += fsync
        self._mark(group, fsync)

    def _mark(self, group: list[Commit], fsync: bool) -> None:
        """*group* is in the journal: off the queue, marked, said (repeatable)."""
        unwritten = self.unwritten
        for commit in group:
            if unwritten and unwritten[0] is commit:
                unwritten.popleft()
            commit.written = True
        self._written(group, fsync)
        self.intent = None

    def _settle(self) -> None:
        """Finish what an interrupted writer left (see the module's docstring)."""
        assert self.intent is not None
        group, fsync, size = self.intent
        if self.journal.size != size or group[-1].written:
            self._mark(group, fsync)  # its records stand: not written twice
        else:
            self.intent = None  # cut back, or never begun: written again

    def end_segment(self, end: SegmentEnd) -> None:
        """Start the next segment after *end* (every commit before it written).

        Raises:
            OSError: The file work failed, or a helping thread's write did.
            RuntimeError: Commits before *end* are still unwritten.
        """
        with self.lock:
            if self.error is not None:
                raise self.error
            if self.intent is not None:
                self._settle()
            if not self.unwritten or self.unwritten[0] is not end:
                msg = "the journal's queue holds unwritten commits before a snapshot"
                raise RuntimeError(msg)
            self.journal.open_segment(end.revision + 1)
            self.unwritten.popleft()

    def close(self) -> None:
        """Close the journal once no thread writes to it (the state has stopped).

        A helping thread may still hold the journal: the segment's
        descriptor must not be closed (and its number reused) under it.
        After this, a helping thread writes nothing.
        """
        with self.lock:
            self.journal.close()
