"""Who hears of a change: the subscribers of one state and their pattern trie.

:class:`Routes` is owned by the state actor (:mod:`._core`) and used only on
its event loop: the actor routes each action's changes through it, the
handle adds subscribers to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._changes import unchanged_below
from ..messages.events import StateChanged, _state_changed
from ..paths import PatternTrie, format_path

if TYPE_CHECKING:
    from .._changes import Change
    from ..messages.actions import Action
    from .subscriber import Subscriber

__all__: list[str] = []  # internal


class Routes:
    """The subscribers by name, and the trie that matches a path to them.

    Concurrency: not thread-safe; the state actor's event loop only.
    """

    __slots__ = ("_unnamed", "stoppers", "subscribers", "trie")

    def __init__(self) -> None:
        self.trie: PatternTrie[Subscriber] = PatternTrie()
        self.subscribers: dict[str, Subscriber] = {}
        self.stoppers = 0  # subscribers with stop_bubbling
        self._unnamed = 0

    def add(self, sub: Subscriber) -> None:
        """Route changes to *sub* from now on (its name must be free)."""
        self.subscribers[sub.name] = sub
        self.trie.add(sub.segments, sub)
        if sub.stop_bubbling:
            self.stoppers += 1

    def remove(self, sub: Subscriber) -> None:
        """Route nothing more to *sub* (nothing if it is not routed to)."""
        if self.subscribers.get(sub.name) is sub:
            del self.subscribers[sub.name]
            self.trie.remove(sub.segments, sub)
            if sub.stop_bubbling:
                self.stoppers -= 1

    def unique_name(self, base: str) -> str:
        """*base*, or ``base#N`` when a subscriber holds it already."""
        self._unnamed += 1
        name = base if base not in self.subscribers else f"{base}#{self._unnamed}"
        while name in self.subscribers:
            self._unnamed += 1
            name = f"{base}#{self._unnamed}"
        return name

    def route(
        self,
        action: Action,
        revision: int,
        changes: list[Change],
        only: Subscriber | None = None,
    ) -> dict[Subscriber, list[StateChanged]]:
        """The events of *changes* for each subscriber they reach (or *only*)."""
        routed: dict[Subscriber, list[StateChanged]] = {}
        match = self.trie.match
        for change in changes:
            matches = match(change.path)
            if not matches:
                continue
            stop_depth = -1
            if self.stoppers:
                # A stopper that got this change from below (depth < len(path))
                # hides it from every subscriber above itself.
                n = len(change.path)
                for sub, (depth, below) in matches.items():
                    if sub.stop_bubbling and not below and stop_depth < depth < n:
                        stop_depth = depth
            event: StateChanged | None = None
            for sub, (depth, below) in matches.items():
                if only is not None and sub is not only:
                    continue
                if below:
                    if sub.literal and unchanged_below(change, sub.segments):
                        continue
                elif depth < stop_depth:
                    continue
                if event is None:
                    event = _state_changed(
                        revision,
                        format_path(change.path),
                        change.kind,
                        change.old,
                        change.new,
                        action.id,
                        action.source,
                        action.payload,
                    )
                events = routed.get(sub)
                if events is None:
                    routed[sub] = [event]
                else:
                    events.append(event)
        return routed
