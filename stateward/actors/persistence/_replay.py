"""Read-only views of a state directory: the feed rebuilt, and inspection."""

from __future__ import annotations

import contextlib
import errno
import math
import os
from typing import TYPE_CHECKING, Any, Final

import attrs

from ..._errors import (
    CorruptStateError,
)
from ...tree import Tree
from .._files import Files
from ._directory import _list
from ._format import segment_name, snapshot_name
from ._recovery import PROGRESS_EVERY, RecoveryProgress
from ._segments import apply_record, read_segment, replay_records, segments_after
from ._snapshot import Snapshot, read_snapshot

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..._changes import Change

__all__ = [
    "FeedEntry",
    "Inspection",
    "inspect_directory",
    "oldest_snapshot",
    "replay_files",
]

# -- the feed, rebuilt from the files (read-only) -------------------------------

FREEZE_KEPT: Final = 10_000
"""Entries kept between two calls of ``replay_files``'s *freeze*."""


@attrs.frozen
class FeedEntry:
    """One revision rebuilt from the files: the action's identity and changes."""

    revision: int
    action_id: str
    source: str | None
    payload: Any
    changes: list[Change]


def replay_files(
    directory: str,
    after: int,
    until: int,
    tree: Tree | None = None,
    *,
    store_id: bytes | None = None,
    keep: Callable[[list[Change]], bool] | None = None,
    freeze: Callable[[], None] | None = None,
) -> tuple[Tree, list[FeedEntry]]:
    """Rebuild the tree at *until* and the changes of *after* + 1 .. *until*.

    Read-only, safe beside the live service (it reads what is committed),
    in a worker thread of its process too (the snapshot is decoded in short
    calls, between which the GIL passes to the state's loop): the newest
    snapshot at or before *after*, then only the journal segments needed;
    or, given *tree* (the tree at *after*, which it changes), the journal
    only. The changes carry old and new values as the live events did.
    ``replay_files(d, r, r)[0]`` is the tree as it was at revision *r*.

    Only the records of one store are replayed: *store_id*'s (the live
    state's), or else the snapshot's; given *tree*, *store_id* is required.
    With *keep*, only the revisions whose changes it keeps are returned
    (a subscriber's, out of a long journal): the others are let go at once,
    not held until the end. *freeze* (a state's ``gc.freeze()``) is
    called after every :data:`FREEZE_KEPT` entries kept, so that full
    collections do not walk them again and again as they pile up.

    Raises:
        CorruptStateError: No snapshot of the store at or before *after*, a
            segment of another store, or the journal does not reach *until*
            (its ``reason`` says which).
        ValueError: *tree* given without *store_id*.
    """
    files = Files()
    snapshot_revs, segment_firsts, _ = _list(files, directory)
    if tree is None:
        tree, store_id = _tree_before(files, directory, snapshot_revs, after, store_id)
    elif store_id is None:
        raise ValueError("replay_files: a tree given without its store_id")
    entries: list[FeedEntry] = []
    for name, segment in segments_after(
        files, directory, segment_firsts, store_id, tree.revision, until
    ):
        if tree.revision >= until:
            break
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
            if keep is None or keep(changes):
                entries.append(FeedEntry(sequence, action_id, source, extra, changes))
                if freeze is not None and len(entries) % FREEZE_KEPT == 0:
                    freeze()
    if tree.revision < until:
        reason = f"the journal reaches revision {tree.revision}, not {until}"
        raise CorruptStateError(directory, reason)
    return tree, entries


def _tree_before(
    files: Files,
    directory: str,
    snapshot_revs: list[int],
    after: int,
    store_id: bytes | None,
) -> tuple[Tree, bytes]:
    """The tree and store id of the newest whole snapshot at or before *after*.

    Only *store_id*'s snapshots, if given.
    """
    for rev in reversed(snapshot_revs):
        if rev > after:
            continue
        name = snapshot_name(rev)
        path = os.path.join(directory, name)
        try:
            base = read_snapshot(files, path, name, sliced=True)  # (see above)
        except (CorruptStateError, FileNotFoundError):
            continue
        if store_id is not None and base.store_id != store_id:
            continue
        return Tree.adopt(base.root, revision=base.revision), base.store_id
    oldest = min(snapshot_revs) if snapshot_revs else None
    reason = f"no snapshot at or before {after} (oldest: {oldest})"
    raise CorruptStateError(directory, reason)


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


# Readings of a live directory begun again, each time a file it listed was
# removed meanwhile (the service's retention), before that error is raised.
INSPECT_ATTEMPTS: Final = 5


def inspect_directory(
    directory: str,
    revision: int | None = None,
    *,
    on_progress: Callable[[RecoveryProgress], object] | None = None,
) -> Inspection:
    """Describe a state directory and rebuild its tree (at *revision* if given).

    Read-only: no lock, no truncation, no quarantine, so it may run beside a
    live service (it then shows a moment of it; should the service's
    retention remove a file it listed, it reads the directory again, up to
    :data:`INSPECT_ATTEMPTS` times). Blocking: call it from a worker thread
    in async code. *on_progress* is called, in the calling thread, as
    recovery's is (its bytes count the replayed records' payloads), at
    least once when the replay ends.

    Raises:
        CorruptStateError: No usable snapshot at or before *revision*, or the
            journal cannot reach it.
        FileNotFoundError: *directory* does not exist, or files kept
            vanishing while it was read.
    """
    for _ in range(INSPECT_ATTEMPTS - 1):
        _check_is_dir(directory)
        with contextlib.suppress(FileNotFoundError):  # removed meanwhile: again
            return _inspect(directory, revision, on_progress)
    _check_is_dir(directory)
    return _inspect(directory, revision, on_progress)


def _check_is_dir(directory: str) -> None:
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, "no such state directory", directory)


def _inspect(
    directory: str,
    revision: int | None,
    on_progress: Callable[[RecoveryProgress], object] | None,
) -> Inspection:
    files = Files()
    snapshot_revs, segment_firsts, _ = _list(files, directory)
    limit = math.inf if revision is None else revision
    # Newest first, and only one tree kept: the newest whole snapshot at or
    # before *revision*, the base of the replay. The others are read back to
    # be checked, then let go (a large state's snapshots, held all at once,
    # would cost the memory of several states).
    snapshots: list[tuple[str, int, int, str]] = []
    valid: list[int] = []
    base: Snapshot | None = None
    for rev in reversed(snapshot_revs):
        name = snapshot_name(rev)
        path = os.path.join(directory, name)
        try:
            snapshot = read_snapshot(files, path, name)
            status = "ok"
        except CorruptStateError as exc:
            status = exc.reason
        else:
            valid.append(rev)
            if base is None and rev <= limit:
                base = snapshot
            del snapshot
        snapshots.append((name, rev, os.lstat(path).st_size, status))
    snapshots.reverse()
    # Only the records the replay needs are kept: those after the base.
    after = -1 if base is None else base.revision
    segments: list[tuple[str, int, int, str]] = []
    kept: list[tuple[str, int, list[bytes]]] = []  # name, first revision, payloads
    newest = max(valid, default=-1)
    for first in segment_firsts:
        name = segment_name(first)
        try:
            segment = read_segment(files.read(os.path.join(directory, name)), name)
        except CorruptStateError as exc:
            segments.append((name, first, 0, exc.reason))
            continue
        if segment.of_another(first, None if base is None else base.store_id):
            reason = "belongs to another store or is misnamed"
            segments.append((name, first, len(segment.payloads), reason))
            continue  # (not this state's history: not replayed)
        status = "ok" if segment.torn is None else f"torn tail: {segment.torn}"
        segments.append((name, first, len(segment.payloads), status))
        # The payloads of revisions after + 1 .. limit.
        at, payloads = segment.first, segment.payloads
        start = max(0, after + 1 - at)
        stop = len(payloads) if revision is None else revision - at + 1
        if start < stop:
            kept.append((name, at + start, payloads[start:stop]))
        if segment.payloads:  # (in sequence: the last is the newest)
            newest = max(newest, segment.first + len(segment.payloads) - 1)
        del segment
    if not valid:
        raise CorruptStateError(directory, "no snapshot reads back whole")
    target = newest if revision is None else revision
    if base is None or target > newest:
        reason = f"revision {target} is not on disk (it holds {min(valid)}..{newest})"
        raise CorruptStateError(directory, reason)
    tree = Tree.adopt(base.root, revision=base.revision)
    total = sum(len(payload) for _, _, payloads in kept for payload in payloads)
    done = 0
    # In slices, to report progress between them.
    for name, at, payloads in kept:
        for start in range(0, len(payloads), PROGRESS_EVERY):
            if at + start > tree.revision + 1:
                break  # (a gap, named below)
            chunk = payloads[start : start + PROGRESS_EVERY]
            done += replay_records(tree, at + start, chunk, name)
            if on_progress is not None and tree.revision < target:
                replayed = tree.revision - base.revision
                on_progress(RecoveryProgress(done, total, replayed, tree.revision))
    if tree.revision < target:
        reason = f"revision {tree.revision + 1} is missing from the journal"
        raise CorruptStateError(directory, reason)
    replayed = tree.revision - base.revision
    if on_progress is not None:
        on_progress(RecoveryProgress(done, total, replayed, tree.revision))
    return Inspection(snapshots, segments, min(valid), newest, tree.revision, tree.root)
