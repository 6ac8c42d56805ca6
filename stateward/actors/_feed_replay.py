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
from ._history import Entry
from ._requests import _Replayed
from ._routing import Routes

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..messages.actions import Action
    from ._ack import Receipt
    from ._core import _Core
    from ._history import Row
    from .persistence import FeedEntry
    from .subscriber import Subscriber

__all__ = ["replay"]


def replay(
    core: _Core, sub: Subscriber, since: int, older: list[FeedEntry] | None = None
) -> None:
    """Give *sub* every matching change after *since*, in order, then live.

    *older* are the changes rebuilt from the files up to *since* (those
    that may match), the history ring holding the rest.

    Runs without yielding right after *sub* joined the trie, so the live
    feed starts exactly after the replay: no gap, no duplicate. What is
    committed (the files' revisions and the ring's, up to the durable one)
    is routed as *sub*'s task takes it (:func:`_routed`): routing a long
    history at once stopped the state's loop (0.9 s for a ring of 100,000).
    Revisions not yet committed (a few batches at most) are routed now and
    attached to their pending commit, so that, as live events, they reach
    *sub* only once on disk.
    """
    persister = core.persister
    durable = core.tree.revision if persister is None else persister.durable_revision
    pending = [] if persister is None else list(persister.inflight)
    history = core.history
    committed = history.rows_since(since, durable)
    newer = history.rows_since(max(since, durable))
    backlog: list[_Delivery] = []
    j = 0
    for row in newer:
        entry = Entry(*row)
        events = core.routes.route(
            entry.action, entry.revision, entry.changes, sub
        ).get(sub)
        if not events:
            continue
        delivery = _Delivery(
            entry.revision,
            tuple(events),
            _receipt(core, sub, entry.revision, entry.action.id),
        )
        while j < len(pending) and pending[j].revision < entry.revision:
            j += 1
        if j == len(pending):
            backlog.append(delivery)
        else:
            pending[j].outbox.append((sub, delivery))
    lazy = _routed(core, sub, older or [], committed) if older or committed else None
    sub.replay(backlog, lazy)


def _routed(
    core: _Core, sub: Subscriber, older: list[FeedEntry], rows: list[Row]
) -> Iterator[_Delivery]:
    """*sub*'s deliveries of *older*, then of *rows* (all committed), one at a time.

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
    older.clear()
    while entries:
        old = entries.popleft()
        meta = _Replayed(old.action_id, old.source, old.payload)
        routed = routes.route(cast("Action", meta), old.revision, old.changes, sub)
        events = routed.get(sub)
        if events:
            receipt = _receipt(core, sub, old.revision, old.action_id)
            yield _Delivery(old.revision, tuple(events), receipt)
    ring = deque(rows)
    rows.clear()
    while ring:
        revision, action, changes, _ = ring.popleft()
        events = routes.route(action, revision, changes, sub).get(sub)
        if events:
            receipt = _receipt(core, sub, revision, action.id)
            yield _Delivery(revision, tuple(events), receipt)


def _receipt(core: _Core, sub: Subscriber, revision: int, action_id: str) -> Receipt:
    """The receipt of a replayed delivery: committed, waiting on *sub* alone."""
    return new_receipt(
        revision, True, action_id, (sub.name,), core.new_event, owner=core.subscribers
    )
