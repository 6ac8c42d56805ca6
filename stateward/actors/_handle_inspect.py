"""The state's counters and action log, read without blocking.

:class:`HandleInspection` is the part of :class:`~stateward.StateHandle`
that reports on the state actor (docs/inspection.md). A base class, never
used alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._subscription import StateStatistics

if TYPE_CHECKING:
    from ._core import _Core
    from ._log import LoggedAction
    from .subscriber import SubscriberStatistics

__all__ = ["HandleInspection"]


class HandleInspection:
    """Statistics and the action log of the state actor (a base class).

    Concurrency: every method reads the actor's counters on its event
    loop's thread, never waits, and never changes anything.
    """

    __slots__ = ()
    _core: _Core

    def action_log(self) -> list[LoggedAction]:
        """The last actions (``action_log`` of them), oldest first (never blocks).

        Each with its revision, id, type, source, result (applied, unchanged
        or rejected and why), the paths it changed with their new values, and
        the derivations that raised. Values under a ``redact`` pattern show as
        ``"<redacted>"``.
        """
        return self._core.log.entries()

    def statistics(self) -> StateStatistics:
        """Return a snapshot of the actor's counters (never blocks)."""
        core = self._core
        mailbox = core.mailbox
        p = core.persister
        return StateStatistics(
            revision=core.tree.revision,
            subscribers=len(core.subscribers),
            mailbox_used=len(mailbox),
            mailbox_size=mailbox.size,
            senders_waiting=mailbox.parked,
            applied=core.applied,
            rejected=core.rejected,
            durable_revision=None if p is None else p.durable_revision,
            journal_commits=0 if p is None else p.writer.commits,
            journal_fsyncs=0 if p is None else p.writer.fsyncs,
            snapshots=0 if p is None else p.snapshots.count,
        )

    def subscriber_statistics(self) -> dict[str, SubscriberStatistics]:
        """Return every subscriber's counters, by name (never blocks)."""
        return {n: s.statistics() for n, s in self._core.subscribers.items()}
