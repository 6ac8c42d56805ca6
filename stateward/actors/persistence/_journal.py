"""The journal: the state's segments written, record by record, and its snapshots."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from typing import TYPE_CHECKING, Final

from .._files import crash_point
from ._directory import _list
from ._format import (
    _SEGMENT_HEAD,
    _segment_header,
    _snapshot_header,
    segment_name,
    snapshot_name,
)

if TYPE_CHECKING:
    from ._config import PersistenceConfig

__all__ = ["Journal"]

logger = logging.getLogger(__name__)

# Where every commit is fsynced and the disk has ample room, a segment is
# written ahead with zeros, as PostgreSQL writes its WAL: a record then
# lands in blocks the file already has, and its fsync writes the data
# alone, not the file's new size as well. The zeros past the last record
# are no record; recovery cuts them off (docs/persistence.md).
ZEROS_FIRST: Final = 64 << 10
"""The zeros a new segment starts with (bytes); each later stretch doubles
what the segment holds, up to :data:`ZEROS_MOST`."""
ZEROS_MOST: Final = 1 << 20
"""The longest stretch of zeros written at once (bytes)."""
ZEROS_ROOM: Final = 1 << 30
"""Free bytes the filesystem must keep beside a stretch, else records are
appended: on a disk nearly full, the room is the snapshots'."""
NO_ZEROS: Final = frozenset({"btrfs", "zfs", "bcachefs", "tmpfs", "ramfs"})
"""Filesystems whose overwrite is no cheaper than an append, where records
are appended: those that copy a block on write (the zeros would double
what is written, for nothing), and those in memory."""


class Journal:
    """Appends records and writes snapshots; every method blocks (worker thread).

    One thread calls :meth:`commit` and :meth:`open_segment` at a time (the
    persister's worker, or a Store call's own thread, under the lock of the
    ``JournalWriter``); :meth:`write_snapshot` and :meth:`retain` may run in
    another thread at the same time: they touch other files.
    """

    def __init__(
        self, config: PersistenceConfig, store_id: bytes, snapshot_revision: int
    ) -> None:
        self.config = config
        self.files = config.files
        self.directory = config.state_dir
        self.store_id = store_id
        self.snapshot_revision = snapshot_revision
        self.fd: int | None = None
        self.segment_first = 0
        self.size = 0  # bytes written and accepted in the current segment
        # Where the zeros written ahead of the records end (0: none). Only
        # where every commit is fsynced; the segment's descriptor then
        # writes where it is told, not at the file's end (``positioned``).
        self.zeroed = 0
        self.positioned = False
        self.zeroing = (
            config.durability == "fsync"
            and self.files.filesystem(self.directory) not in NO_ZEROS
        )
        # A failed write whose tail could not be cut back: nothing may follow.
        self.damaged = False
        # For the adaptive snapshot schedule (read by the state actor, written
        # here in a worker thread: plain ints, a stale read only delays it).
        self.snapshot_bytes = 0  # the body of the newest snapshot
        self.carried = 0  # record bytes after it in earlier segments (recovery)

    def open_segment(self, first: int) -> None:
        """Close the current segment and start ``journal-<first>.wal``, durably."""
        files = self.files
        if self.fd is not None:
            self._cut_zeros()
            # Sync the old segment first: under "flush" its tail may not be on
            # disk yet, and records after it must never be durable before it.
            files.fsync(self.fd)
            files.close(self.fd)
            self.fd = None
        path = os.path.join(self.directory, segment_name(first))
        self.zeroed = 0
        self.positioned = False
        fd = files.create(path)
        try:
            header = _segment_header(self.store_id, first)
            files.write(fd, header)
            files.fsync(fd)
            files.fsync_dir(self.directory)
            # The header is synced alone, as it always was: the zeros come
            # with the first commit, so a crash never tears a header that
            # something follows.
            ahead = self.zeroing and self._room(ZEROS_FIRST)
            if not ahead:
                # Records are appended: after a write cut back (see commit),
                # the next one lands where the segment now ends, not past a
                # hole.
                created, fd = fd, files.open_append(path)
                files.close(created)
        except BaseException:
            files.close(fd)
            raise
        self.fd = fd
        self.damaged = False
        self.segment_first = first
        self.size = len(header)
        # Records are written where the last one ends (see commit); zeros
        # ahead of them from the first commit on.
        self.zeroed = len(header) if ahead else 0
        self.positioned = ahead
        self.carried = 0

    def _cut_zeros(self) -> None:
        """Cut the zeros written ahead off the segment, which ends here.

        Best effort: zeros left after the last record (a failed cut, or a
        crash) are no record, and recovery cuts them off.
        """
        if self.zeroed > self.size and not self.damaged:
            path = os.path.join(self.directory, segment_name(self.segment_first))
            try:
                self.files.truncate(path, self.size)
            except OSError as exc:
                logger.debug("the zeros after %s's records stay: %s", path, exc)
        self.zeroed = 0

    def _room(self, stretch: int) -> bool:
        """Whether the disk has ample room for *stretch* more zeros."""
        try:
            return self.files.free_bytes(self.directory) >= ZEROS_ROOM + stretch
        except OSError:
            return False

    def _zero_ahead(self, fd: int, need: int) -> None:
        """Write zeros past the records to come (*need* bytes of them), if room.

        The stretch doubles the segment, up to :data:`ZEROS_MOST`; it is
        written after where those records end (so that no two writes
        overlap) and synced by the commit's fsync. Without room, the
        records are written past the zeros' end, extending the file, and
        no more zeros are written in this segment.
        """
        end = self.size + need
        stretch = min(ZEROS_MOST, max(ZEROS_FIRST, self.zeroed))
        if not self._room(stretch):
            self.zeroed = 0
            return
        files = self.files
        files.seek(fd, end)
        files.write(fd, bytes(stretch))
        files.seek(fd, self.size)
        self.zeroed = end + stretch

    def commit(self, blob: bytes, fsync: bool) -> None:
        """Append *blob* (whole records) and, if asked, fsync it.

        On any error the segment is cut back (best effort) to what was
        accepted before, and the error propagates: after an OSError the
        caller must fail-stop. After another exception (a KeyboardInterrupt
        in a Store call's thread, which writes its own records) the same
        records may be committed again, once the cut back succeeded; if it
        did not, every later commit raises OSError.
        """
        files = self.files
        fd = self.fd
        assert fd is not None
        if self.damaged:
            msg = "an earlier write to the journal could not be cut back"
            raise OSError(errno.EIO, msg)
        try:
            if blob:
                if self.zeroed and self.size + len(blob) > self.zeroed:
                    self._zero_ahead(fd, len(blob))
                files.write(fd, blob)
            crash_point("journal-written")
            if fsync:
                files.fsync(fd)
                crash_point("journal-synced")
            # Last, inside the try: an exception before it cuts the records
            # back, and after it leaves them, with the size saying which (the
            # writer reads it after an interrupted commit: JournalWriter).
            self.size += len(blob)
        except BaseException:
            self.damaged = True
            with contextlib.suppress(OSError):
                path = os.path.join(self.directory, segment_name(self.segment_first))
                files.truncate(path, self.size)  # (the zeros ahead too)
                self.zeroed = 0  # (the next records extend the file)
                if self.positioned:
                    files.seek(fd, self.size)  # (a write may have moved it)
                self.damaged = False
            raise

    def write_snapshot(self, revision: int, body: bytes) -> None:
        """Write the snapshot of *revision* atomically (R3); no temp left on error."""
        path = os.path.join(self.directory, snapshot_name(revision))
        header = _snapshot_header(self.store_id, revision, body)
        self.files.write_atomic(path, header, body)
        self.snapshot_revision = revision
        self.snapshot_bytes = len(body)

    def bytes_since_snapshot(self) -> int:
        """Record bytes written after the newest snapshot's revision (about)."""
        return self.carried + self.size - _SEGMENT_HEAD.size

    def retain(self) -> list[str]:
        """Keep the newest snapshots and the journal they need; return what went.

        Called only after the newest snapshot is durable (R4). Snapshots go
        first, then the segments that only they needed, so a crash half-way
        leaves every remaining snapshot with its journal.
        """
        files = self.files
        directory = self.directory
        snapshots, segments, _ = _list(files, directory)
        keep = self.config.keep_snapshots
        if len(snapshots) <= keep:
            return []
        removed: list[str] = []
        for revision in snapshots[:-keep]:
            name = snapshot_name(revision)
            files.unlink(os.path.join(directory, name))
            removed.append(name)
            crash_point("retention-removed-snapshot")
        oldest = snapshots[-keep]
        for i, first in enumerate(segments[:-1]):
            if segments[i + 1] <= oldest + 1 and first != self.segment_first:
                name = segment_name(first)
                files.unlink(os.path.join(directory, name))
                removed.append(name)
        files.fsync_dir(directory)
        return removed

    def close(self) -> None:
        """Close the current segment (its records were synced by commit).

        The zeros written ahead of the records to come are cut off first:
        a closed state's files hold its records alone.
        """
        if self.fd is not None:
            self._cut_zeros()
            fd, self.fd = self.fd, None
            self.files.close(fd)
