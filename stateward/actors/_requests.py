"""What the state actor's mailbox holds (requests), and what it commits.

Shared by the actor (:mod:`._core`), its handle, and the persister, which
writes each batch's :class:`Commit` and answers the requests that wait for
the disk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._json import JSON
    from ..messages.actions import Action
    from ._ack import Receipt
    from ._delivery import Outbox
    from ._derive import Derivation
    from ._mailbox import Signal

__all__: list[str] = []  # internal


class _Replayed:
    """The identity of an action rebuilt from the journal (for routing)."""

    __slots__ = ("id", "payload", "source")

    def __init__(self, action_id: str, source: str | None, payload: JSON) -> None:
        self.id = action_id
        self.source = source
        self.payload = payload


class _Register:
    """An internal message: add a derivation, or remove the one of *dest*."""

    __slots__ = ("derivation", "dest", "id")

    def __init__(self, derivation: Derivation | None, dest: str = "") -> None:
        self.derivation = derivation
        self.dest = dest
        self.id = "derive"


class _Request:
    """One action in the mailbox, and the slot its sender waits on."""

    __slots__ = ("action", "done", "error", "receipt", "wait")

    def __init__(
        self, action: Action | _Register | None, done: Signal, wait: int = 0
    ) -> None:
        self.action = action  # None: the stop marker
        self.done = done  # set once answered: receipt or error
        self.error: BaseException | None = None
        self.receipt: Receipt | None = None
        self.wait = wait  # with persistence: 0 none, 1 written, 2 fsynced


def _cancellable(request: _Request) -> bool:
    """Whether *request*'s sender is a task, which may be cancelled while it waits."""
    return not request.done.by_thread


class Commit:
    """One batch of the state actor: its records, waiting senders and events."""

    __slots__ = ("blob", "fsync", "outbox", "requests", "revision", "written")

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
        # Set (under JournalWriter.lock) once its records are written
        # as asked. Several commits may share a revision (one without
        # records), so a commit is known by itself, not by its revision.
        self.written = False

    def refuse(self, error: Exception) -> None:
        """Answer every sender still waiting with *error*; give up the events."""
        for request in self.requests:
            if not request.done.is_set():
                request.error = error
                request.done.set()
        for sub, delivery in self.outbox:
            delivery.receipt._give_up(sub.name)
