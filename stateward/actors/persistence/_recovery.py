"""Recovery: the newest whole snapshot, then the journal after it."""

from __future__ import annotations

import logging
import os
import uuid
from typing import TYPE_CHECKING, Final

import attrs

from ..._errors import (
    CorruptStateError,
    describe_exception,
    is_exit_request,
    short_repr,
)
from ...tree import Tree
from .._files import crash_point
from ._directory import _list, _quarantine
from ._format import _RECORD_HEAD, dumps_bytes, segment_name, snapshot_name
from ._journal import Journal
from ._segments import FOREIGN, read_segment, replay_records
from ._snapshot import Snapshot, read_snapshot

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..._json import JSON
    from ._config import PersistenceConfig

__all__ = ["PROGRESS_EVERY", "Recovered", "RecoveryProgress", "recover"]

logger = logging.getLogger(__name__)


@attrs.frozen
class Recovered:
    """What :func:`recover` found: the tree, and the journal open for appends."""

    tree: Tree
    journal: Journal
    snapshot_revision: int
    replayed: int
    warnings: tuple[str, ...]


PROGRESS_EVERY: Final = 50_000  # records between two progress reports


@attrs.frozen
class RecoveryProgress:
    """How far a recovery got; passed to ``PersistenceConfig.on_progress``."""

    bytes_done: int
    """Journal bytes replayed so far (whole segments)."""
    bytes_total: int
    """Journal bytes to replay in all."""
    records: int
    """Records replayed so far."""
    revision: int
    """The revision the tree has reached."""


def _guarded(
    callback: Callable[[RecoveryProgress], object] | None,
) -> Callable[[RecoveryProgress], object] | None:
    """*callback*, made harmless: one that raises is logged and not called again.

    A report of progress must never stop the recovery of what was
    acknowledged (Ctrl-C and ``SystemExit`` still do).
    """
    if callback is None:
        return None
    failed = False

    def report(progress: RecoveryProgress) -> None:
        nonlocal failed
        if failed:
            return
        try:
            callback(progress)
        except BaseException as exc:
            if is_exit_request(exc):
                raise
            failed = True
            logger.warning(
                "recovery progress callback %s raised %s; not called again",
                short_repr(callback),
                describe_exception(exc),
            )

    return report


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def recover(
    config: PersistenceConfig, initial: JSON, *, sliced: bool = False
) -> Recovered:  # blocking: run in a worker thread
    """Open (or create) the state directory and rebuild the tree.

    *initial* is used only when the directory holds no state yet. With
    *sliced*, the snapshot is decoded in short calls (beside other states
    of this process, whose loops one long call would stop: see
    :func:`~._snapshot.read_snapshot`).

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
        journal.write_snapshot(0, dumps_bytes(initial))  # (sets snapshot_bytes)
        journal.open_segment(1)
        # *initial* is the actor's private, validated copy: adopted, not copied.
        return Recovered(Tree.adopt(initial), journal, 0, 0, ())

    base: Snapshot | None = None
    for revision in reversed(snapshots):
        name = snapshot_name(revision)
        try:
            snap = read_snapshot(
                files, os.path.join(directory, name), name, sliced=sliced
            )
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
    tree = Tree.adopt(base.root, revision=base.revision)

    # Replay the segments that may hold records after the snapshot.
    needed = [
        first
        for i, first in enumerate(segments)
        if i + 1 == len(segments) or segments[i + 1] > base.revision + 1
    ]
    replayed = carried = 0
    report = _guarded(config.on_progress)
    sizes = [_size(os.path.join(directory, segment_name(f))) for f in needed]
    done_bytes, total_bytes = 0, sum(sizes)
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
        if segment.of_another(first, base.store_id):
            raise CorruptStateError(name, FOREIGN)
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
        # In slices, to report progress between them (and after the segment).
        payloads = segment.payloads
        for start in range(0, len(payloads), PROGRESS_EVERY):
            before = tree.revision
            chunk = payloads[start : start + PROGRESS_EVERY]
            carried += replay_records(tree, segment.first + start, chunk, name)
            replayed += tree.revision - before
            if report is not None and start + PROGRESS_EVERY < len(payloads):
                report(
                    RecoveryProgress(done_bytes, total_bytes, replayed, tree.revision)
                )
        done_bytes += sizes[i]
        if report is not None:
            report(RecoveryProgress(done_bytes, total_bytes, replayed, tree.revision))
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
    # What the adaptive snapshot schedule weighs (see PersistenceConfig).
    journal.snapshot_bytes = base.size
    journal.carried = carried + replayed * _RECORD_HEAD.size
    # A crash may have come between a snapshot and its retention pass: finish
    # it now that the directory (and so the newest snapshot) is synced.
    files.fsync_dir(directory)
    journal.retain()
    return Recovered(tree, journal, base.revision, replayed, tuple(warnings))
