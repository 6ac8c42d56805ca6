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

    __slots__ = ("_answers", "_done", "_new_event", "_pending", "revision")

    def __init__(
        self, revision: int, names: list[str], new_event: Callable[[], LoopEvent]
    ) -> None:
        self.revision = revision
        self._pending = set(names)
        # (name, RAS code, message) per Ack, (name, None, "") per give-up; made
        # on the first answer. Acks are built only when a report is read.
        self._answers: list[tuple[str, int | None, str]] | None = None
        self._new_event = new_event
        self._done: LoopEvent | None = None  # made on the first wait: most never do

    def post(self, subscriber: str, ras: int, message: str = "") -> None:
        """Record an Ack, unless *subscriber* was not asked or already answered."""
        self._answer(subscriber, ras, message)

    def give_up(self, name: str) -> None:
        """Record that subscriber *name* will never answer."""
        self._answer(name, None, "")

    def _answer(self, name: str, ras: int | None, message: str) -> None:
        pending = self._pending
        if name not in pending:
            return
        pending.discard(name)
        if self._answers is None:
            self._answers = [(name, ras, message)]
        else:
            self._answers.append((name, ras, message))
        if not pending and self._done is not None:
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
        answers = self._answers or ()
        gave_up = [name for name, ras, _ in answers if ras is None]
        missing = (*gave_up, *sorted(self._pending))
        revision = self.revision
        acks = tuple(
            Ack(name, revision, ras, text)
            for name, ras, text in answers
            if ras is not None
        )
        if any(a.ras != 1 for a in acks):
            result = ResultCode.SUB_FAILED
        elif missing:
            result = ResultCode.MISSING_RESPONSE
        else:
            result = ResultCode.ALL_SUBS_SUCCESS
        return AckReport(result, acks, missing)
