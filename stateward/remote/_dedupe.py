"""The owner's dedupe window: the replies to the latest requests, by id.

A client that gets no answer sends the same entry again; the owner answers
an id it holds here instead of applying the action twice. For a persisted
state the window survives a restart: the ids of actions that changed the
state are read back from the journal, and the replies of the others
(nothing changed, rejected) from ``remote-<name>.dedupe`` beside it, where
:func:`append_synced` puts them, fsynced, before they are sent.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
from typing import TYPE_CHECKING, Any

from .._errors import CorruptStateError
from ..actors._files import Files

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .._json import JSON

__all__ = ["DedupeWindow", "append_synced", "in_journal"]

logger = logging.getLogger(__name__)

Reply = dict[str, Any]


def in_journal(reply: Reply) -> bool:
    """Whether the journal holds this reply's action (it changed the state)."""
    return reply["kind"] == "applied" and bool(reply.get("changed"))


class DedupeWindow:
    """The replies to the last *size* request ids, oldest first.

    Used by the owner's task alone (not thread-safe), except :meth:`load`,
    which runs in a worker thread before the owner reads any request.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.replies: collections.OrderedDict[str, Reply] = collections.OrderedDict()
        self.log_path: str | None = None
        """The file of the replies the journal does not hold (persisted states)."""

    def __contains__(self, action_id: object) -> bool:
        return action_id in self.replies

    def __getitem__(self, action_id: str) -> Reply:
        return self.replies[action_id]

    def remember(self, action_id: str, reply: Reply) -> None:
        """Keep *reply*, dropping the oldest beyond the size (no file written)."""
        replies = self.replies
        replies[action_id] = reply
        if len(replies) > self.size:
            replies.popitem(last=False)

    def log_lines(self, replies: Iterable[tuple[str, Reply]]) -> bytes:
        """The log's lines for those of *replies* the journal does not hold."""
        return b"".join(
            json.dumps({"id": i, "reply": r}).encode() + b"\n"
            for i, r in replies
            if not in_journal(r)
        )

    def load(self, directory: str | None, name: str, revision: int) -> JSON:
        """Rebuild the window of the state persisted in *directory* (blocking).

        From the log, then the journal's last *size* revisions up to
        *revision*; the log is then compacted to what the window holds of
        it. Nothing for a state in memory (*directory* None). A damaged log
        line or an unreadable journal is warned about and skipped: the
        window is then shorter, never wrong. Returns the tree the journal
        was replayed on (None if none), for the caller to free in slices.
        """
        from ..actors.persistence import oldest_snapshot, replay_files

        if directory is None:
            return None
        path = self.log_path = os.path.join(directory, f"remote-{name}.dedupe")
        kept: list[tuple[str, Reply]] = []
        with contextlib.suppress(FileNotFoundError):
            # Through the same checks as every file of the state directory:
            # no symlink followed, no FIFO read.
            lines = Files().read(path).split(b"\n")
            for i, line in enumerate(lines):
                if not line:
                    continue
                try:
                    item = json.loads(line)
                    kept.append((str(item["id"]), dict(item["reply"])))
                except (ValueError, KeyError, TypeError):
                    if i < len(lines) - 2:
                        logger.warning("%s: skipping a damaged line %d", path, i)
        oldest = oldest_snapshot(directory) or 0
        after = max(oldest, revision - self.size)
        root: JSON = None
        if revision > after:
            try:
                tree, entries = replay_files(directory, after, revision)
                root = tree.root
                del tree
            except (CorruptStateError, OSError) as exc:
                logger.warning("dedupe window: the journal could not be read: %s", exc)
                entries = []
            for entry in entries:
                reply = {
                    "kind": "applied",
                    "revision": entry.revision,
                    "changed": True,
                    "subscribers": [],
                    "derive_errors": [],
                }
                kept.append((entry.action_id, reply))
        for action_id, reply in kept[-self.size :]:
            self.replies[action_id] = reply
        # Compact: keep what the window holds of the log's own entries.
        logged = [(i, r) for i, r in kept if not in_journal(r)]
        Files().write_atomic(path, self.log_lines(logged[-self.size :]))
        return root


def append_synced(path: str, data: bytes) -> None:
    """Append *data* to the log at *path* and fsync it (blocking)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        Files().write(fd, data)  # a short os.write is not a complete write
        os.fsync(fd)
    finally:
        os.close(fd)
