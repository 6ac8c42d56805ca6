"""A handler that only hands events over to another thread (the Store's)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..messages.events import Resync, StateChanged

__all__ = ["Handover"]


class Handover:
    """A handler that only hands events over to another thread (internal).

    The Store's callbacks and watches are such handlers. Besides being
    awaited as any handler (waiting for room when there is none),
    :meth:`offer` queues all of a delivery's events at once without waiting,
    or none. The state actor calls it itself when nothing of this subscriber
    is queued or being handled, and records the Ack at once: no turn of the
    subscriber's task per event, which cost every writer about as much as a
    quarter of its call. A refusal (no room) sends the delivery the usual
    way, through the mailbox, behind which every later one then waits: the
    order never changes.
    """

    __slots__ = ("__qualname__",)

    def __init__(self, name: str) -> None:
        self.__qualname__ = name  # the subscriber's default name

    def offer(self, events: tuple[StateChanged, ...]) -> bool:
        """Queue every one of *events* without waiting, or none (False)."""
        raise NotImplementedError

    async def __call__(self, event: StateChanged | Resync) -> int:
        """Queue *event*, waiting for room; the Ack's code."""
        raise NotImplementedError
