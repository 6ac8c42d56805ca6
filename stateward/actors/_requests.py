"""What the state actor's mailbox holds: requests, and the identities of replays.

Shared by the actor (:mod:`._core`), its handle, and the persister, which
answers the requests that wait for the disk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._json import JSON
    from ..messages.actions import Action
    from ._ack import Receipt
    from ._derive import Derivation
    from ._journal_writer import Commit
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

    __slots__ = ("action", "commit", "done", "error", "receipt", "wait")

    def __init__(
        self, action: Action | _Register | None, done: Signal, wait: int = 0
    ) -> None:
        self.action = action  # None: the stop marker
        self.done = done  # set once answered: receipt or error
        self.error: BaseException | None = None
        self.receipt: Receipt | None = None
        self.wait = wait  # with persistence: 0 none, 1 written, 2 fsynced
        # A thread's request waiting for the disk: the commit it may write
        # itself (see _journal_writer), handed over with its signal set.
        self.commit: Commit | None = None


def _cancellable(request: _Request) -> bool:
    """Whether *request*'s sender is a task, which may be cancelled while it waits."""
    return not request.done.by_thread
