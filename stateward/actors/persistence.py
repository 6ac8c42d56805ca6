"""Persistence: a group-committed journal, atomic snapshots, retention, recovery.

A persisted state lives in one directory::

    LOCK                                   flock: one writer at a time
    snapshot-00000000000000000000.snap     the whole tree at revision 0
    snapshot-00000000000000001000.snap     ... at revision 1000
    journal-00000000000000000001.wal       records of revisions 1..1000
    journal-00000000000000001001.wal       records of revisions 1001..
    quarantine/                            copies of files found damaged

**Journal.** One record per action that changed something, framed as
``magic, length, crc32, sequence, synced`` + payload; the sequence is the
revision, contiguous; *synced* is the newest revision that was fsynced before
this record was written (what lets recovery tell a crash's hole from
corruption, below). The payload is the action's effect (the paths it set and deleted,
with their new values), not the action: replaying it needs no user code (no
``eq`` callable) and gives the same tree. A segment starts with a header
holding the store's id and its first sequence.

**Group commit.** The state actor applies a batch of actions in memory and
hands their records to the persistence task, which writes everything waiting
with one ``write`` and one ``fsync``; while it waits on the disk the actor
applies the next batch. A durable send is answered, and the events of its
batch reach subscribers, only after that fsync (rule R2).

**Snapshots.** Every ``snapshot_every`` revisions, or once a change is
``snapshot_interval`` seconds older than the last snapshot, the tree is serialized (on
the event loop, at C speed) and written off the loop: temp file, fsync,
``os.replace``, fsync of the directory. The journal rotates to a new segment
at the snapshot's revision + 1. Once the snapshot is durable, retention keeps
the newest ``keep_snapshots`` and the journal segments they need.

**Recovery.** Newest snapshot whose checksums hold (a damaged one is moved to
``quarantine/`` and the previous one is used), then every record after it. A
damaged *last* record of the last segment is a torn write: it is cut off with
a warning. So is damage followed only by records that were written before it
was synced (their *synced* is older than the damaged revision: a crash may
have written them without it, under ``"flush"`` or ``"none"``). Damage
followed by a record written after the damaged one was synced is
corruption: a :class:`CorruptStateError`, never a silent skip. Temp files are removed.
Recovering twice gives the same state.

Every file operation goes through :class:`~stateward.actors._files.Files`,
always in a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import struct
import uuid
import zlib
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, final

import attrs

from .._checks import int_validator, seconds_validator
from .._errors import (
    CorruptStateError,
    InvalidActionError,
    StateLockedError,
    StatewardError,
)
from ..messages.events import ChangeKind
from ..tree import Tree
from ._files import Files, crash_point

if TYPE_CHECKING:
    from .._json import JSON
    from ..tree import Change

__all__ = [
    "Durability",
    "Journal",
    "PersistenceConfig",
    "Recovered",
    "encode_changes",
    "encode_record",
    "lock_directory",
    "read_segment",
    "recover",
]

logger = logging.getLogger(__name__)

Durability: TypeAlias = Literal["none", "flush", "fsync"]
"""How far a send waits by default, and what each group commit does.

* ``"fsync"``: every group of records is fsynced before its senders are
  answered: survives power loss.
* ``"flush"``: records are written to the OS before senders are answered, not
  fsynced: survives a crash of the process, not of the machine.
* ``"none"``: sends do not wait for the disk (the records still follow, in
  order); ``send(..., durable=True)`` still forces an fsync.
"""

DURABILITIES: Final = ("none", "flush", "fsync")

_RECORD_MAGIC: Final = b"SWR2"
_RECORD_HEAD: Final = struct.Struct("<4sIIQQ")  # magic, length, crc, seq, synced
_RECORD_CRC: Final = struct.Struct("<IQQ")  # what the crc covers before the payload
_SEGMENT_MAGIC: Final = b"SWJRNL01"
_SEGMENT_HEAD: Final = struct.Struct("<8s16sQI")  # magic, store id, first seq, crc
_SNAPSHOT_MAGIC: Final = b"SWSNAP01"
_SNAPSHOT_HEAD: Final = struct.Struct("<8s16sQQII")  # +revision, length, crcs
_MAX_RECORD: Final = 1 << 30

_SNAPSHOT_RE: Final = re.compile(r"snapshot-(\d{20})\.snap")
_SEGMENT_RE: Final = re.compile(r"journal-(\d{20})\.wal")
_TEMP_SUFFIX: Final = ".tmp"
QUARANTINE: Final = "quarantine"
LOCK_NAME: Final = "LOCK"

_dumps = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False
).encode


def _check_durability(_inst: object, attr: attrs.Attribute[str], value: object) -> None:
    if value not in DURABILITIES:
        reason = f"must be one of {', '.join(DURABILITIES)} (got {value!r})"
        raise InvalidActionError(attr.name, reason)


def _check_dir(_inst: object, attr: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not value or "\0" in value:
        reason = f"must be a non-empty path without NUL (got {value!r})"
        raise InvalidActionError(attr.name, reason)


@final
@attrs.frozen
class PersistenceConfig:
    """Where and how a state actor persists (see :func:`~stateward.open_state`)."""

    state_dir: str = attrs.field(converter=os.fspath, validator=_check_dir)
    durability: Durability = attrs.field(default="fsync", validator=_check_durability)
    snapshot_every: int = attrs.field(default=10_000, validator=int_validator(1))
    keep_snapshots: int = attrs.field(default=3, validator=int_validator(1))
    snapshot_interval: float | None = attrs.field(
        default=None, validator=seconds_validator(positive=True, optional=True)
    )
    files: Files = attrs.field(factory=Files, eq=False, repr=False)


# -- records -----------------------------------------------------------------


def encode_changes(changes: list[Change], action: Any) -> bytes:
    """Encode the effect of one action.

    ``[["a", id, source, payload], then per change ["s", path, value] |
    ["d", path] | ["p", path]]``: the action's identity (for the events a
    feed rebuilds from the journal), its writes, deletions and pings.
    """
    ops: list[list[Any]] = [["a", action.id, action.source, action.payload]]
    for change in changes:
        kind = change.kind
        if kind is ChangeKind.DELETED:
            ops.append(["d", change.path])
        elif kind is ChangeKind.PINGED:
            ops.append(["p", change.path])
        else:
            ops.append(["s", change.path, change.new])
    return _dumps(ops).encode()


def encode_record(sequence: int, payload: bytes, synced: int) -> bytes:
    """Frame *payload* as the journal record of revision *sequence*.

    *synced* must be a revision whose record was fsynced before this one is
    written (older is fine, newer is a lie that recovery would trust).
    """
    length = len(payload)
    crc = zlib.crc32(payload, zlib.crc32(_RECORD_CRC.pack(length, sequence, synced)))
    head = _RECORD_HEAD.pack(_RECORD_MAGIC, length, crc, sequence, synced)
    return head + payload


def _segment_header(store_id: bytes, first: int) -> bytes:
    body = _SEGMENT_MAGIC + store_id + struct.pack("<Q", first)
    return body + struct.pack("<I", zlib.crc32(body))


def _snapshot_header(store_id: bytes, revision: int, body: bytes) -> bytes:
    head = (
        _SNAPSHOT_MAGIC
        + store_id
        + struct.pack("<QQI", revision, len(body), zlib.crc32(body))
    )
    return head + struct.pack("<I", zlib.crc32(head))


def snapshot_name(revision: int) -> str:
    """Return the file name of the snapshot of *revision*."""
    return f"snapshot-{revision:020d}.snap"


def segment_name(first: int) -> str:
    """Return the file name of the journal segment starting at *first*."""
    return f"journal-{first:020d}.wal"


@attrs.frozen
class Snapshot:
    """A snapshot file read back whole."""

    store_id: bytes
    revision: int
    root: Any


def parse_snapshot(data: bytes, name: str) -> Snapshot:
    """Check and decode a snapshot file.

    Raises:
        CorruptStateError: Any check fails (magic, checksums, length, JSON).
    """
    size = _SNAPSHOT_HEAD.size
    if len(data) < size:
        raise CorruptStateError(
            name, f"snapshot is {len(data)} bytes, shorter than its header"
        )
    magic, store_id, revision, length, body_crc, head_crc = _SNAPSHOT_HEAD.unpack_from(
        data
    )
    if magic != _SNAPSHOT_MAGIC or zlib.crc32(data[: size - 4]) != head_crc:
        raise CorruptStateError(name, "snapshot header is damaged")
    body = data[size:]
    if len(body) != length or zlib.crc32(body) != body_crc:
        raise CorruptStateError(name, "snapshot body does not match its checksum")
    try:
        root = json.loads(body)
    except ValueError as exc:  # a checksum collision, or a writer bug
        raise CorruptStateError(name, f"snapshot body is not JSON: {exc}") from None
    return Snapshot(store_id, revision, root)


@attrs.frozen
class Segment:
    """A journal segment read back: its header and its valid records."""

    store_id: bytes
    first: int
    records: list[tuple[int, bytes]]  # (sequence, payload)
    valid_size: int  # bytes up to the end of the last valid record
    torn: str | None  # why the tail after valid_size is unusable, if it is


def read_segment(data: bytes, name: str) -> Segment:
    """Decode a segment; stop at the first bad record and say why.

    A bad record with nothing valid after it is a torn tail, reported in
    ``torn`` (the caller decides whether one is acceptable there). So is a
    hole, zeros up to valid records that were all written before the damaged
    revision was synced: a crash kept a later unsynced write and lost an
    earlier one. Anything else followed by a valid record is corruption.

    Raises:
        CorruptStateError: The header is damaged, a sequence is out of order,
            or valid records follow damage that no crash can explain.
    """
    head = _SEGMENT_HEAD.size
    if len(data) < head:
        return Segment(b"", -1, [], 0, f"header is torn ({len(data)} bytes)")
    magic, store_id, first, crc = _SEGMENT_HEAD.unpack_from(data)
    if magic != _SEGMENT_MAGIC or zlib.crc32(data[: head - 4]) != crc:
        if len(data) == head:
            # Nothing follows: the header's own write was torn by a crash
            # (records are appended only once the header is synced).
            return Segment(b"", -1, [], 0, "header is torn (damaged, no records)")
        raise CorruptStateError(name, "journal segment header is damaged")
    records: list[tuple[int, bytes]] = []
    offset = head
    expected = first
    end = len(data)
    while offset < end:
        problem, sequence, _synced, payload, after = _record_at(data, offset)
        if problem is None:
            if sequence != expected:
                reason = (
                    f"record at byte {offset} has revision {sequence}, "
                    f"expected {expected}"
                )
                raise CorruptStateError(name, reason)
            records.append((sequence, payload))
            expected += 1
            offset = after
            continue
        later = _valid_records(data, offset + 1)
        if later:
            at, _ = later[0]
            hole = not data[offset:at].strip(b"\0")
            if not hole or any(synced >= expected for _, synced in later):
                reason = (
                    f"damaged record at byte {offset} ({problem}) is followed by a "
                    f"valid record at byte {at}: corruption, not a torn write"
                )
                raise CorruptStateError(name, reason)
            problem = f"a hole (zeros) up to unsynced records at byte {at}"
        return Segment(store_id, first, records, offset, f"{problem} at byte {offset}")
    return Segment(store_id, first, records, offset, None)


def _record_at(data: bytes, offset: int) -> tuple[str | None, int, int, bytes, int]:
    size = _RECORD_HEAD.size
    if len(data) - offset < size:
        return "record header is cut short", 0, 0, b"", 0
    magic, length, crc, sequence, synced = _RECORD_HEAD.unpack_from(data, offset)
    if magic != _RECORD_MAGIC:
        return "no record marker", 0, 0, b"", 0
    if length > _MAX_RECORD:
        return f"impossible record length {length}", 0, 0, b"", 0
    start = offset + size
    payload = data[start : start + length]
    if len(payload) < length:
        return "record is cut short", 0, 0, b"", 0
    if (
        zlib.crc32(payload, zlib.crc32(_RECORD_CRC.pack(length, sequence, synced)))
        != crc
    ):
        return "record checksum does not match", 0, 0, b"", 0
    return None, sequence, synced, payload, start + length


def _valid_records(data: bytes, start: int) -> list[tuple[int, int]]:
    """Every valid record at or after *start*: (offset, synced)."""
    found: list[tuple[int, int]] = []
    while (at := data.find(_RECORD_MAGIC, start)) >= 0:
        problem, _, synced, _, after = _record_at(data, at)
        if problem is None:
            found.append((at, synced))
            start = after
        else:
            start = at + 1
    return found


def apply_record(
    tree: Tree,
    sequence: int,
    payload: bytes,
    name: str,
    changes: list[Change] | None = None,
) -> list[Any]:
    """Replay one record's effect on *tree*, set its revision, return its identity.

    With *changes*, the record's changes (pings included) are appended there
    as the live action made them, old values and all. The identity is the
    ``["a", id, source, payload]`` operation.

    Raises:
        CorruptStateError: The payload is not a record this code can replay.
    """
    identity: list[Any] = ["a", "", None, None]
    unknown = None
    try:
        for op in json.loads(payload):
            kind = op[0]
            if kind == "a":
                identity = op
                continue
            path = tuple(op[1])
            if kind == "s":
                tree.replay_set(path, op[2], changes)
            elif kind == "d":
                tree.replay_delete(path, changes)
            elif kind == "p":
                if changes is not None:
                    tree.ping(path, changes)
            else:
                unknown = kind
                break
    except (ValueError, TypeError, IndexError, KeyError, StatewardError) as exc:
        reason = f"record of revision {sequence} cannot be replayed: {exc!r}"
        raise CorruptStateError(name, reason) from None
    if unknown is not None:
        reason = f"record of revision {sequence} holds an unknown operation {unknown!r}"
        raise CorruptStateError(name, reason)
    tree.revision = sequence
    return identity


# -- the lock ----------------------------------------------------------------


def lock_directory(files: Files, directory: str) -> int:
    """Take the directory's lock (flock on ``LOCK``) and return its fd.

    Raises:
        StateLockedError: Another process, or another open state of this
            process, holds it.
    """
    files.makedirs(directory)
    path = os.path.join(directory, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        finally:
            os.close(fd)
        msg = f"{directory} is in use by another state (pid {holder}): one writer"
        raise StateLockedError(msg) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def unlock_directory(fd: int) -> None:
    """Release the lock taken by :func:`lock_directory`."""
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


# -- recovery ----------------------------------------------------------------


@attrs.frozen
class Recovered:
    """What :func:`recover` found: the tree, and the journal open for appends."""

    tree: Tree
    journal: Journal
    snapshot_revision: int
    replayed: int
    warnings: tuple[str, ...]


def _list(files: Files, directory: str) -> tuple[list[int], list[int], list[str]]:
    snapshots: list[int] = []
    segments: list[int] = []
    temps: list[str] = []
    for name in files.listdir(directory):
        if name.endswith(_TEMP_SUFFIX):
            temps.append(name)
        elif m := _SNAPSHOT_RE.fullmatch(name):
            snapshots.append(int(m.group(1)))
        elif m := _SEGMENT_RE.fullmatch(name):
            segments.append(int(m.group(1)))
    return sorted(snapshots), sorted(segments), temps


def _quarantine(files: Files, directory: str, name: str, *, move: bool) -> None:
    """Keep a damaged file aside in ``quarantine/`` (moved, or copied)."""
    qdir = os.path.join(directory, QUARANTINE)
    files.makedirs(qdir)
    target = os.path.join(qdir, name)
    n = 1
    while files.exists(target):
        n += 1
        target = os.path.join(qdir, f"{name}.{n}")
    source = os.path.join(directory, name)
    if move:
        files.replace(source, target)
        files.fsync_dir(directory)
    else:
        shutil.copyfile(source, target)
    files.fsync_dir(qdir)


def recover(
    config: PersistenceConfig, initial: JSON
) -> Recovered:  # blocking: run in a worker thread
    """Open (or create) the state directory and rebuild the tree.

    *initial* is used only when the directory holds no state yet.

    Raises:
        CorruptStateError: Damage that recovery must not paper over.
    """
    files = config.files
    directory = config.state_dir
    files.makedirs(directory)
    warnings: list[str] = []
    snapshots, segments, temps = _list(files, directory)
    for name in temps:
        files.unlink(os.path.join(directory, name))
    if temps:
        files.fsync_dir(directory)
        logger.info("removed %d leftover temp file(s) in %s", len(temps), directory)

    if not snapshots:
        if segments:
            raise CorruptStateError(directory, "journal segments but no snapshot")
        store_id = uuid.uuid4().bytes
        journal = Journal(config, store_id, 0)
        journal.write_snapshot(0, _dumps(initial).encode())
        journal.open_segment(1)
        return Recovered(Tree(initial), journal, 0, 0, ())

    base: Snapshot | None = None
    for revision in reversed(snapshots):
        name = snapshot_name(revision)
        try:
            snap = parse_snapshot(files.read(os.path.join(directory, name)), name)
            if snap.revision != revision:
                raise CorruptStateError(name, f"holds revision {snap.revision}")
        except CorruptStateError as exc:
            message = f"snapshot {name} is damaged ({exc.reason}); using an older one"
            logger.warning("%s", message)
            warnings.append(message)
            _quarantine(files, directory, name, move=True)
            continue
        base = snap
        break
    if base is None:
        raise CorruptStateError(directory, "no snapshot reads back whole")
    tree = Tree(base.root, revision=base.revision)

    # Replay the segments that may hold records after the snapshot.
    needed = [
        first
        for i, first in enumerate(segments)
        if i + 1 == len(segments) or segments[i + 1] > base.revision + 1
    ]
    replayed = 0
    for i, first in enumerate(needed):
        name = segment_name(first)
        path = os.path.join(directory, name)
        data = files.read(path)
        try:
            segment = read_segment(data, name)
        except CorruptStateError:
            _quarantine(files, directory, name, move=False)
            raise
        last = i + 1 == len(needed)
        if segment.first not in (-1, first) or (
            segment.first != -1 and segment.store_id != base.store_id
        ):
            reason = "journal segment belongs to another store or is misnamed"
            raise CorruptStateError(name, reason)
        if segment.torn is not None:
            if not last:
                _quarantine(files, directory, name, move=False)
                reason = (
                    f"damaged tail ({segment.torn}) in a segment that is not the last"
                )
                raise CorruptStateError(name, reason)
            message = f"cut a torn tail off {name}: {segment.torn}"
            logger.warning("%s", message)
            warnings.append(message)
            if segment.first == -1:
                files.unlink(path)
                files.fsync_dir(directory)
        if last and segment.first != -1:
            # Cut a torn tail, and sync what stays in any case: the last run
            # may have written it without an fsync ("flush"), and the records
            # appended from now on will say that it is synced.
            files.truncate(path, segment.valid_size)
        for sequence, payload in segment.records:
            if sequence <= tree.revision:
                continue
            if sequence != tree.revision + 1:
                reason = (
                    f"revision {tree.revision + 1} is missing (next found: {sequence})"
                )
                raise CorruptStateError(name, reason)
            apply_record(tree, sequence, payload, name)
            replayed += 1
        crash_point("recovery-replayed-segment")

    journal = Journal(config, base.store_id, base.revision)
    # Append to a fresh segment; an empty one already there is replaced.
    first = tree.revision + 1
    if first in segments and config.files.exists(
        os.path.join(directory, segment_name(first))
    ):
        files.unlink(os.path.join(directory, segment_name(first)))
        files.fsync_dir(directory)
    journal.open_segment(first)
    # A crash may have come between a snapshot and its retention pass: finish
    # it now that the directory (and so the newest snapshot) is synced.
    files.fsync_dir(directory)
    journal.retain()
    return Recovered(tree, journal, base.revision, replayed, tuple(warnings))


# -- the writer ----------------------------------------------------------------


class Journal:
    """Appends records and writes snapshots; every method blocks (worker thread).

    One task calls :meth:`commit` and :meth:`open_segment` at a time (the
    persistence task); :meth:`write_snapshot` and :meth:`retain` may run in
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

    def open_segment(self, first: int) -> None:
        """Close the current segment and start ``journal-<first>.wal``, durably."""
        files = self.files
        if self.fd is not None:
            # Sync the old segment first: under "flush" its tail may not be on
            # disk yet, and records after it must never be durable before it.
            files.fsync(self.fd)
            files.close(self.fd)
            self.fd = None
        path = os.path.join(self.directory, segment_name(first))
        fd = files.create(path)
        try:
            header = _segment_header(self.store_id, first)
            files.write(fd, header)
            files.fsync(fd)
            files.fsync_dir(self.directory)
        except BaseException:
            files.close(fd)
            raise
        self.fd = fd
        self.segment_first = first
        self.size = len(header)

    def commit(self, blob: bytes, fsync: bool) -> None:
        """Append *blob* (whole records) and, if asked, fsync it.

        On any error the segment is cut back (best effort) to what was
        accepted before, and the error propagates: the caller must fail-stop.
        """
        files = self.files
        fd = self.fd
        assert fd is not None
        try:
            if blob:
                files.write(fd, blob)
            crash_point("journal-written")
            if fsync:
                files.fsync(fd)
                crash_point("journal-synced")
        except BaseException:
            with contextlib.suppress(OSError):
                path = os.path.join(self.directory, segment_name(self.segment_first))
                files.truncate(path, self.size)
            raise
        self.size += len(blob)

    def write_snapshot(self, revision: int, body: bytes) -> None:
        """Write the snapshot of *revision* atomically (R3); no temp left on error."""
        path = os.path.join(self.directory, snapshot_name(revision))
        header = _snapshot_header(self.store_id, revision, body)
        self.files.write_atomic(path, header, body)
        self.snapshot_revision = revision

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
        """Close the current segment (its records were synced by commit)."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            self.files.close(fd)


# -- the feed, rebuilt from the files (read-only) -------------------------------


@attrs.frozen
class FeedEntry:
    """One revision rebuilt from the files: the action's identity and changes."""

    revision: int
    action_id: str
    source: str | None
    payload: Any
    changes: list[Change]


def replay_files(
    directory: str, after: int, until: int
) -> tuple[Tree, list[FeedEntry]]:
    """Rebuild the tree at *until* and the changes of *after* + 1 .. *until*.

    Read-only, safe beside the live service (it reads what is committed):
    the newest snapshot at or before *after*, then only the journal segments
    needed. The changes carry old and new values as the live events did.
    ``replay_files(d, r, r)[0]`` is the tree as it was at revision *r*.

    Raises:
        CorruptStateError: No snapshot at or before *after*, or the journal
            does not reach *until* (its ``reason`` says which).
    """
    files = Files()
    snapshot_revs, segment_firsts, _ = _list(files, directory)
    base: Snapshot | None = None
    for rev in reversed(snapshot_revs):
        if rev > after:
            continue
        name = snapshot_name(rev)
        try:
            base = parse_snapshot(files.read(os.path.join(directory, name)), name)
        except (CorruptStateError, FileNotFoundError):
            continue
        break
    if base is None:
        oldest = min(snapshot_revs) if snapshot_revs else None
        reason = f"no snapshot at or before {after} (oldest: {oldest})"
        raise CorruptStateError(directory, reason)
    tree = Tree(base.root, revision=base.revision)
    entries: list[FeedEntry] = []
    for i, first in enumerate(segment_firsts):
        following = segment_firsts[i + 1] if i + 1 < len(segment_firsts) else None
        if (following is not None and following <= tree.revision + 1) or first > until:
            continue
        name = segment_name(first)
        segment = read_segment(files.read(os.path.join(directory, name)), name)
        for sequence, payload in segment.records:
            if sequence <= tree.revision:
                continue
            if sequence != tree.revision + 1 or sequence > until:
                break
            if sequence <= after:
                apply_record(tree, sequence, payload, name)
                continue
            changes: list[Change] = []
            _, action_id, source, extra = apply_record(
                tree, sequence, payload, name, changes
            )
            entries.append(FeedEntry(sequence, action_id, source, extra, changes))
        if tree.revision >= until:
            break
    if tree.revision < until:
        reason = f"the journal reaches revision {tree.revision}, not {until}"
        raise CorruptStateError(directory, reason)
    return tree, entries


def oldest_snapshot(directory: str) -> int | None:
    """The revision of the oldest snapshot file (not checked), if any."""
    snapshots = _list(Files(), directory)[0]
    return snapshots[0] if snapshots else None


# -- inspection (read-only) ----------------------------------------------------


@attrs.frozen
class Inspection:
    """What :func:`inspect_directory` found; nothing in the directory is changed."""

    snapshots: list[tuple[str, int, int, str]]  # name, revision, bytes, "ok" or why not
    segments: list[tuple[str, int, int, str]]  # name, first, records, "ok" or why not
    oldest: int | None  # the oldest revision that can be rebuilt
    newest: int | None  # the newest revision on disk
    revision: int | None  # the revision of `tree`
    tree: Any


def inspect_directory(directory: str, revision: int | None = None) -> Inspection:
    """Describe a state directory and rebuild its tree (at *revision* if given).

    Read-only: no lock, no truncation, no quarantine, so it may run beside a
    live service (it then shows a moment of it).

    Raises:
        CorruptStateError: No usable snapshot at or before *revision*, or the
            journal cannot reach it.
        FileNotFoundError: *directory* does not exist.
    """
    files = Files()
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, "no such state directory", directory)
    snapshot_revs, segment_firsts, _ = _list(files, directory)
    snapshots: list[tuple[str, int, int, str]] = []
    valid: dict[int, Snapshot] = {}
    for rev in snapshot_revs:
        name = snapshot_name(rev)
        data = files.read(os.path.join(directory, name))
        try:
            valid[rev] = parse_snapshot(data, name)
            status = "ok"
        except CorruptStateError as exc:
            status = exc.reason
        snapshots.append((name, rev, len(data), status))
    segments: list[tuple[str, int, int, str]] = []
    records: dict[int, tuple[bytes, str]] = {}
    for first in segment_firsts:
        name = segment_name(first)
        try:
            segment = read_segment(files.read(os.path.join(directory, name)), name)
        except CorruptStateError as exc:
            segments.append((name, first, 0, exc.reason))
            continue
        status = "ok" if segment.torn is None else f"torn tail: {segment.torn}"
        segments.append((name, first, len(segment.records), status))
        for sequence, payload in segment.records:
            records[sequence] = (payload, name)
    if not valid:
        raise CorruptStateError(directory, "no snapshot reads back whole")
    newest = max([*valid, *records])
    target = newest if revision is None else revision
    bases = [r for r in valid if r <= target]
    if not bases or target > newest:
        reason = f"revision {target} is not on disk (it holds {min(valid)}..{newest})"
        raise CorruptStateError(directory, reason)
    base = valid[max(bases)]
    tree = Tree(base.root, revision=base.revision)
    while tree.revision < target:
        found = records.get(tree.revision + 1)
        if found is None:
            reason = f"revision {tree.revision + 1} is missing from the journal"
            raise CorruptStateError(directory, reason)
        apply_record(tree, tree.revision + 1, found[0], found[1])
    return Inspection(snapshots, segments, min(valid), newest, tree.revision, tree.root)
