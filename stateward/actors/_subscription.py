"""What a handle reports: the state's counters, and a live subscription."""

from __future__ import annotations

from typing import TYPE_CHECKING, final

import anyio
import attrs

from ._util import NoPublicConstructor

if TYPE_CHECKING:
    from ._core import _Core
    from .subscriber import Subscriber, SubscriberStatistics

__all__ = ["StateStatistics", "Subscription"]


@final
@attrs.frozen
class StateStatistics:
    """A snapshot of the state actor's counters."""

    revision: int
    """The current revision."""
    subscribers: int
    """Subscribers registered now."""
    mailbox_used: int
    """Actions waiting in the mailbox."""
    mailbox_size: int
    """The mailbox's bound."""
    senders_waiting: int
    """Senders parked because the mailbox was full (they hold their action)."""
    applied: int
    """Actions applied (including those that changed nothing)."""
    rejected: int
    """Actions rejected with an ActionRejectedError."""
    durable_revision: int | None = None
    """Persisted states: the last revision committed to the journal."""
    journal_commits: int = 0
    """Persisted states: group commits written (each one write, maybe one fsync)."""
    journal_fsyncs: int = 0
    """Persisted states: fsyncs of the journal."""
    snapshots: int = 0
    """Persisted states: snapshots written since it started."""


@final
class Subscription(metaclass=NoPublicConstructor):
    """A live subscription, returned by :meth:`StateHandle.subscribe`.

    Also an async context manager that unsubscribes on exit.
    """

    __slots__ = ("_core", "_sub", "start_revision")

    def __init__(self, core: _Core, sub: Subscriber, start_revision: int) -> None:
        self._core = core
        self._sub = sub
        self.start_revision = start_revision
        """The revision when it started: it receives every change after it."""

    @property
    def name(self) -> str:
        """The subscriber's unique name (used in Acks and reports)."""
        return self._sub.name

    @property
    def pattern(self) -> str:
        """The pattern it was registered with."""
        return self._sub.pattern

    def __repr__(self) -> str:
        return repr(self._sub).replace("<Subscriber", "<Subscription", 1)

    def statistics(self) -> SubscriberStatistics:
        """Return a snapshot of the subscriber's counters (never blocks)."""
        return self._sub.statistics()

    async def unsubscribe(self) -> None:
        """Stop the subscriber and wait until its task has ended.

        No event is delivered after this starts; a handler running now is
        cancelled; queued deliveries are reported as missing to their senders.
        Idempotent.
        """
        self._core.remove_subscriber(self._sub)
        await self._sub.wait_finished()

    async def __aenter__(self) -> Subscription:
        """Return the subscription itself."""
        await anyio.lowlevel.checkpoint()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Unsubscribe."""
        await self.unsubscribe()
