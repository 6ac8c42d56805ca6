"""A delivery, and how the state actor hands deliveries to subscribers' mailboxes.

The state actor (or, on a persisted state, the persistence task after the
commit) routes each action's changes to a :class:`_Delivery` per
subscriber, collects them in an :data:`Outbox`, and puts them into the
mailboxes in order with :func:`deliver_nowait`, then :func:`deliver` for
what must wait for room.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from ..messages.events import StateChanged
    from ._ack import Receipt
    from .subscriber import Subscriber

__all__ = ["Outbox", "_Delivery", "deliver", "deliver_nowait"]


class _Delivery:
    """The events of one action for one subscriber; made by the state actor."""

    __slots__ = ("events", "queued_at", "receipt", "revision")

    def __init__(
        self, revision: int, events: tuple[StateChanged, ...], receipt: Receipt
    ) -> None:
        self.revision = revision
        self.events = events
        self.receipt = receipt  # the action's reply channel
        self.queued_at = 0.0


Outbox: TypeAlias = "list[tuple[Subscriber, _Delivery]]"


def deliver_nowait(outbox: Outbox) -> Outbox:
    """Put *outbox* into the subscribers' mailboxes, in order, while they fit.

    Returns the rest, from the first delivery that must wait for room (a full
    mailbox on BLOCK) on. Hand that to :func:`deliver` once the senders are
    answered: a slow subscriber then delays the next actions, never a
    receipt, and no subscriber's deliveries overtake each other.
    """
    for i, (sub, delivery) in enumerate(outbox):
        if not sub.put_nowait(delivery):
            return outbox[i:]
    return []


async def deliver(outbox: Outbox) -> None:
    """Deliver *outbox* in order, waiting for room where the policy says so."""
    for sub, delivery in outbox:
        if not sub.put_nowait(delivery):
            await sub.put(delivery)
