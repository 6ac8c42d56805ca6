"""A subscriber that joins with ``from_revision``: its feed from the past, then live.

The changes after the revision asked for come from the files (those the
history no longer holds, rebuilt by the caller) and from the state's
history, routed to the new subscriber alone, in revision order; those not
yet committed wait for their commit, as live events do.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, cast

from ._ack import new_receipt
from ._delivery import _Delivery
from ._requests import _Replayed
from ._routing import Routes

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..messages.actions import Action
    from ._core import _Core
    from .persistence import FeedEntry
    from .subscriber import Subscriber

__all__ = ["replay"]


def replay(
    core: _Core, sub: Subscriber, since: int, older: list[FeedEntry] | None = None
) -> None:
    """Give *sub* every matching change after *since*, in order, then live.

    *older* are the changes rebuilt from the files up to *since* (those
    that may match), the history ring holding the rest. They are routed as
    *sub*'s task takes them (:func:`_routed`); the ring's, bounded, at once.

    Runs without yielding right after *sub* joined the trie, so the live
    feed starts exactly after the replay: no gap, no duplicate. Revisions
    not yet committed are attached to their pending commit, so that, as
    live events, they reach *sub* only once on disk.
    """
    persister = core.persister
    durable = core.tree.revision if persister is None else persister.durable_revision
    pending = [] if persister is None else list(persister.inflight)
    backlog: list[_Delivery] = []
    j = 0
    for entry in core.history.since(since):
        events = core.routes.route(
            entry.action, entry.revision, entry.changes, sub
        ).get(sub)
        if not events:
            continue
        receipt = new_receipt(
            entry.revision,
            True,
            entry.action.id,
            (sub.name,),
            core.new_event,
            owner=core.subscribers,
        )
        delivery = _Delivery(entry.revision, tuple(events), receipt)
        while j < len(pending) and pending[j].revision < entry.revision:
            j += 1
        if entry.revision <= durable or j == len(pending):
            backlog.append(delivery)
        else:
            pending[j].outbox.append((sub, delivery))
    sub.replay(backlog, _routed(core, sub, older) if older else None)


def _routed(
    core: _Core, sub: Subscriber, older: list[FeedEntry]
) -> Iterator[_Delivery]:
    """*sub*'s deliveries of *older* (all committed), made one at a time.

    Routed by a trie of *sub* and of the subscribers that stop bubbling
    (they hide changes from those above them), as they stand now: the
    state's own trie changes as subscribers come and go meanwhile. Each
    entry is let go of once routed.
    """
    routes = Routes()
    routes.add(sub)
    for other in core.routes.subscribers.values():
        if other.stop_bubbling and other is not sub:
            routes.add(other)
    entries = deque(older)
    while entries:
        old = entries.popleft()
        meta = _Replayed(old.action_id, old.source, old.payload)
        routed = routes.route(cast("Action", meta), old.revision, old.changes, sub)
        events = routed.get(sub)
        if events:
            receipt = new_receipt(
                old.revision,
                True,
                old.action_id,
                (sub.name,),
                core.new_event,
                owner=core.subscribers,
            )
            yield _Delivery(old.revision, tuple(events), receipt)
