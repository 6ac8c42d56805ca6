"""The reply side of one action: collects every subscriber's Ack for its sender."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from ..messages.acks import Ack, AckReport, ResultCode

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._mailbox import LoopEvent

__all__ = ["AckCollector"]


class AckCollector:
    """Collects the Acks for one action; any number of tasks may wait on it.

    Subscriber actors :meth:`post` their Ack; the state actor calls
    :meth:`give_up` for a subscriber that will never answer (its event was
    dropped, it was unsubscribed, the actor stopped). Waiting is read-only, so
    a waiter cancelled half-way loses nothing for the others, and a later call
    still sees every Ack that arrived meanwhile.
    """

    __slots__ = ("_acks", "_done", "_gave_up", "_new_event", "_pending", "revision")

    def __init__(
        self, revision: int, names: list[str], new_event: Callable[[], LoopEvent]
    ) -> None:
        self.revision = revision
        self._pending = set(names)
        self._acks: list[tuple[str, int, str]] = []
        self._gave_up: list[str] = []
        self._new_event = new_event
        self._done: LoopEvent | None = None  # made on the first wait: most never do

    def post(self, subscriber: str, ras: int, message: str = "") -> None:
        """Record an Ack, unless *subscriber* was not asked or already answered.

        The :class:`Ack` itself is made only when someone reads the report.
        """
        pending = self._pending
        if subscriber in pending:
            pending.discard(subscriber)
            self._acks.append((subscriber, ras, message))
            if not pending and self._done is not None:
                self._done.set()

    def give_up(self, name: str) -> None:
        """Record that subscriber *name* will never answer."""
        if name in self._pending:
            self._pending.discard(name)
            self._gave_up.append(name)
            self._check_done()

    def _check_done(self) -> None:
        if not self._pending and self._done is not None:
            self._done.set()

    async def wait(self, timeout: float | None) -> AckReport:
        """Wait until every subscriber answered or gave up, or *timeout* passed."""
        if self._pending:
            if self._done is None:
                self._done = self._new_event()
            if timeout is None:
                await self._done.wait()
            else:
                with anyio.move_on_after(timeout):
                    await self._done.wait()
        else:
            await anyio.lowlevel.checkpoint()
        return self.report()

    def report(self) -> AckReport:
        """Build the report from what has arrived so far."""
        missing = (*self._gave_up, *sorted(self._pending))
        revision = self.revision
        acks = tuple(Ack(name, revision, ras, text) for name, ras, text in self._acks)
        if any(a.ras != 1 for a in acks):
            result = ResultCode.SUB_FAILED
        elif missing:
            result = ResultCode.MISSING_RESPONSE
        else:
            result = ResultCode.ALL_SUBS_SUCCESS
        return AckReport(result, acks, missing)
