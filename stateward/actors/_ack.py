"""The reply side of one action: its :class:`Receipt` collects every Ack.

A receipt is the reply channel that travels with an action's deliveries:
subscriber actors post their Ack to it, and the state actor records a give-up
for a subscriber that will never answer (its delivery was dropped, it was
unsubscribed, the actor stopped). One object per action does both jobs,
because one is made per action on the hot path.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Final, final

import anyio
import anyio.lowlevel

from .._errors import AckDeadlockError
from ..messages.acks import Ack, AckReport, ResultCode
from ._util import NoPublicConstructor

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._mailbox import LoopEvent
    from .subscriber import Subscriber

__all__ = ["Receipt", "current_subscriber", "new_receipt"]


current_subscriber: ContextVar[Subscriber | None] = ContextVar(
    "stateward_current_subscriber", default=None
)
"""The subscriber whose task (its handler) runs in this context, if any."""


_EMPTY_REPORT: Final = AckReport(ResultCode.ALL_SUBS_SUCCESS, (), ())


@final
class Receipt(metaclass=NoPublicConstructor):
    """The result of one applied action, returned by :meth:`StateHandle.send`.

    Holding a receipt costs nothing. :meth:`acks` may be awaited by any
    number of tasks, any number of times: waiting only reads, so a waiter
    cancelled half-way loses nothing for the others, and a later call sees
    every Ack that arrived meanwhile.

    Attributes:
        revision: The revision after the action (unchanged when it changed
            nothing).
        changed: Whether the action changed anything (an equal write does not).
        subscribers: Names of the subscribers that were sent its events and
            will be asked, in the order they were routed.
        action_id: The action's id.
        derive_errors: ``"dest: error"`` for each derivation that raised after
            this action (its previous value stayed).
    """

    __slots__ = (
        "_answers",
        "_done",
        "_new_event",
        "_owner",
        "_pending",
        "action_id",
        "changed",
        "derive_errors",
        "revision",
        "subscribers",
    )

    revision: int
    changed: bool
    subscribers: tuple[str, ...]
    action_id: str
    derive_errors: tuple[str, ...]
    # Names asked and not yet answered (None: nobody was asked).
    _pending: set[str] | None
    # (name, RAS code, message) per Ack, (name, None, "") per give-up, in the
    # order they came; made on the first answer. Acks are built only when a
    # report is read.
    _answers: list[tuple[str, int | None, str]] | None
    _new_event: Callable[[], LoopEvent] | None
    _done: LoopEvent | None  # made on the first wait: most receipts never wait
    # The actor's subscribers by name (to tell that a handler waits on itself).
    _owner: Mapping[str, Subscriber] | None

    def __repr__(self) -> str:
        return (
            f"<Receipt rev={self.revision} changed={self.changed} "
            f"subscribers={list(self.subscribers)}>"
        )

    async def acks(self, timeout: float | None = None) -> AckReport:
        """Wait for every asked subscriber's Ack, or until *timeout* seconds pass.

        Returns the report in both cases: a subscriber that did not answer in
        time, or whose event was dropped by its overflow policy, is listed in
        ``missing``. Cancelling this wait loses nothing: the Acks keep being
        collected, and the next call sees them. Always a checkpoint.

        Args:
            timeout: Seconds to wait at most; None waits until every
                subscriber answered or gave up.

        Raises:
            AckDeadlockError: Called from a subscriber's handler (or a task it
                started) while this receipt waits on that same subscriber's
                Ack, which cannot come before the handler returns.
        """
        pending = self._pending
        if pending is None:
            await anyio.lowlevel.checkpoint()
            return _EMPTY_REPORT
        if pending:
            me = current_subscriber.get()
            if me is not None and me.busy_with(self):
                raise AckDeadlockError(me.name, self.revision)
            if self._done is None:
                assert self._new_event is not None
                self._done = self._new_event()
            if timeout is None:
                await self._done.wait()
            else:
                with anyio.move_on_after(timeout):
                    await self._done.wait()
        else:
            await anyio.lowlevel.checkpoint()
        return self._report()

    # -- the reply channel: for the actors, never for users ------------------

    def _post(self, name: str, ras: int, message: str = "") -> None:
        """Record *name*'s Ack, unless it was not asked or already answered."""
        self._answer(name, ras, message)

    def _give_up(self, name: str) -> None:
        """Record that subscriber *name* will never answer."""
        self._answer(name, None, "")

    def _answer(self, name: str, ras: int | None, message: str) -> None:
        pending = self._pending
        if pending is None or name not in pending:
            return
        pending.discard(name)
        if self._answers is None:
            self._answers = [(name, ras, message)]
        else:
            self._answers.append((name, ras, message))
        if not pending and self._done is not None:
            self._done.set()

    def _report(self) -> AckReport:
        """Build the report from what has arrived so far (never blocks)."""
        answers = self._answers or ()
        gave_up = [name for name, ras, _ in answers if ras is None]
        missing = (*gave_up, *sorted(self._pending or ()))
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


_new = object.__new__


def new_receipt(
    revision: int,
    changed: bool,
    action_id: str,
    subscribers: tuple[str, ...] = (),
    new_event: Callable[[], LoopEvent] | None = None,
    derive_errors: tuple[str, ...] = (),
    owner: Mapping[str, Subscriber] | None = None,
) -> Receipt:
    """Make a receipt; with *subscribers*, one that collects their Acks.

    The state actor makes one per action: this fills the slots directly, at
    about a third of the cost of a constructor call. *new_event* makes the
    event that :meth:`Receipt.acks` waits on (the loop's own, see
    ``_mailbox``).
    """
    receipt: Receipt = _new(Receipt)
    receipt.revision = revision
    receipt.changed = changed
    receipt.action_id = action_id
    receipt.subscribers = subscribers
    receipt.derive_errors = derive_errors
    receipt._pending = set(subscribers) if subscribers else None
    receipt._answers = None
    receipt._new_event = new_event
    receipt._done = None
    receipt._owner = owner
    return receipt
