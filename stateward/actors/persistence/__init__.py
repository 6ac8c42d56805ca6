"""Persistence: a group-committed journal, atomic snapshots, retention, recovery.

One concept per module: ``_config`` (what the user chooses), ``_format`` (the
bytes on disk), ``_journal`` (records written and read back), ``_snapshot``,
``_directory`` (lock, listing, quarantine), ``_recovery`` and ``_replay``
(read-only views: the feed from the files, inspection).

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

**Snapshots.** Every ``snapshot_every`` revisions (by default: every
10,000, and not before the journal since the last snapshot is as large as
it), or once a change is ``snapshot_interval`` seconds older than the last
snapshot, the tree is serialized (by a forked child, where ``fork``
exists; else on the event loop, at C speed) and written off the loop: temp
file, fsync, ``os.replace``, fsync of the directory. The journal rotates to
a new segment at the snapshot's revision + 1. Once the snapshot is durable,
retention keeps the newest ``keep_snapshots`` and the journal segments they
need.

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

from ._config import (
    ADAPTIVE_SNAPSHOT_EVERY,
    DURABILITIES,
    Durability,
    PersistenceConfig,
)
from ._directory import lock_directory, unlock_directory
from ._format import (
    _RECORD_MAGIC,
    LOCK_NAME,
    QUARANTINE,
    _dumps,
    _segment_header,
    dumps_bytes,
    encode_changes,
    encode_record,
    segment_name,
    snapshot_name,
)
from ._journal import Journal
from ._recovery import Recovered, RecoveryProgress, recover
from ._replay import (
    FeedEntry,
    Inspection,
    inspect_directory,
    oldest_snapshot,
    replay_files,
)
from ._segments import Segment, apply_record, read_segment, replay_records
from ._snapshot import Snapshot, parse_snapshot

__all__ = [
    "ADAPTIVE_SNAPSHOT_EVERY",
    "DURABILITIES",
    "LOCK_NAME",
    "QUARANTINE",
    "_RECORD_MAGIC",
    "Durability",
    "FeedEntry",
    "Inspection",
    "Journal",
    "PersistenceConfig",
    "Recovered",
    "RecoveryProgress",
    "Segment",
    "Snapshot",
    "_dumps",
    "_segment_header",
    "apply_record",
    "dumps_bytes",
    "encode_changes",
    "encode_record",
    "inspect_directory",
    "lock_directory",
    "oldest_snapshot",
    "parse_snapshot",
    "read_segment",
    "recover",
    "replay_files",
    "replay_records",
    "segment_name",
    "snapshot_name",
    "unlock_directory",
]
