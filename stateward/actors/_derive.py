"""Derived state: values computed from other paths, inside the state actor.

A derivation writes ``dest`` from one source (``derive``) or several
(``derive_many``). After an action changes a source, the state actor computes
every affected derivation once, in dependency order (a chain of derivations
settles in the same action), and writes the results into the same revision
before any event of the action leaves: a subscriber never sees a source and
its derived value out of step (glitch-free).

Finding the affected derivations goes through two pattern tries (sources and
destinations), so its cost grows with the derivations that depend on the
written path, not with how many exist.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

from .. import _limits
from .._changes import MISSING, unchanged_below
from .._checks import check_callable
from .._errors import (
    ActionRejectedError,
    InvalidActionError,
    describe_exception,
    is_exit_request,
)
from .._json import copy_json, own_json
from ..messages.actions import Delete, Merge, Set, Transaction
from ..paths import PatternTrie, format_path, parse_path

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from .._changes import Change
    from .._json import JSON
    from ..messages.actions import Action
    from ..paths import PathLike, Segments
    from ..tree import Tree

__all__ = ["Derivation", "Derivations"]


def _overlap(a: Segments, b: Segments) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


class _Source:
    """One source of one derivation: what the sources trie holds."""

    __slots__ = ("derivation", "segments")

    def __init__(self, derivation: Derivation, segments: Segments) -> None:
        self.derivation = derivation
        self.segments = segments


class Derivation:
    """``dest = fn(value at source)``, or ``fn({source: value, ...})`` for many."""

    __slots__ = ("dest", "fn", "many", "order", "segments", "sources")

    def __init__(
        self,
        dest: PathLike,
        sources: Iterable[PathLike],
        fn: Callable[[Any], object],
        *,
        many: bool,
    ) -> None:
        check_callable("fn", fn)
        self.segments = parse_path(dest)  # wildcards are refused here
        if not self.segments:
            raise InvalidActionError("dest", "the root cannot be derived")
        self.dest = format_path(self.segments)
        self.sources = [parse_path(s) for s in sources]
        if not self.sources:
            raise InvalidActionError("sources", "needs at least one source")
        for source in self.sources:
            if _overlap(source, self.segments):
                reason = (
                    f"{format_path(source)!r} overlaps the destination {self.dest!r}"
                )
                raise InvalidActionError("sources", reason)
        self.fn = fn
        self.many = many
        self.order = 0

    def compute(self, tree: Tree) -> JSON:
        """Run ``fn`` on private copies of the sources; return its JSON result.

        Raises:
            Exception: Whatever ``fn`` raised, or InvalidValueError for a
                result that is not JSON.
        """

        def read(source: Segments) -> JSON:
            found = tree.lookup(source)
            return None if found is MISSING else copy_json(found)

        if self.many:
            arg: object = {format_path(s): read(s) for s in self.sources}
        else:
            arg = read(self.sources[0])
        return own_json(
            self.fn(arg),
            f"the value derived for {self.dest!r}",
            max_bytes=_limits.value_bytes(),
        )


class Derivations:
    """Every derivation of one state actor, in dependency order."""

    def __init__(self) -> None:
        self.by_dest: dict[str, Derivation] = {}
        self._sources: PatternTrie[_Source] = PatternTrie()
        self._dests: PatternTrie[Derivation] = PatternTrie()
        self._items: dict[Derivation, list[_Source]] = {}
        self._next = 0

    def __len__(self) -> int:
        return len(self.by_dest)

    def add(self, d: Derivation) -> None:
        """Register *d*; it must not write where another writes, nor close a cycle.

        Raises:
            InvalidActionError: Its destination overlaps another's, or the
                derivations would depend on each other in a cycle.
        """
        for other in self._dests.match(d.segments):
            raise InvalidActionError(
                "dest", f"{d.dest!r} overlaps the derived path {other.dest!r}"
            )
        dependents = {item.derivation for item in self._sources.match(d.segments)}
        items = self._items[d] = [_Source(d, source) for source in d.sources]
        for item in items:
            self._sources.add(item.segments, item)
        self._dests.add(d.segments, d)
        self.by_dest[d.dest] = d
        if not dependents:
            self._next += 1
            d.order = self._next  # after everything: nothing waits for it
            return
        try:
            self._sort()
        except InvalidActionError:
            self.remove(d.dest)
            raise

    def remove(self, dest: str) -> Derivation | None:
        """Forget the derivation of *dest* (its last value stays in the tree)."""
        d = self.by_dest.pop(dest, None)
        if d is not None:
            for item in self._items.pop(d):
                self._sources.remove(item.segments, item)
            self._dests.remove(d.segments, d)
        return d

    def _depends_on(self, d: Derivation) -> set[Derivation]:
        found: set[Derivation] = set()
        for source in d.sources:
            found.update(self._dests.match(source))
        return found

    def _sort(self) -> None:
        """Number every derivation in dependency order (Kahn); refuse a cycle."""
        deps = {d: self._depends_on(d) for d in self.by_dest.values()}
        order = 0
        ready = [d for d, on in deps.items() if not on]
        waiting = {d: set(on) for d, on in deps.items() if on}
        while ready:
            d = ready.pop()
            order += 1
            d.order = order
            for other, on in list(waiting.items()):
                on.discard(d)
                if not on:
                    del waiting[other]
                    ready.append(other)
        if waiting:
            names = ", ".join(sorted(d.dest for d in waiting))
            raise InvalidActionError("sources", f"derivations in a cycle: {names}")
        self._next = order

    def guard(self, action: Action) -> None:
        """Refuse an action that writes at or below a derived path.

        Raises:
            ActionRejectedError: It does; nothing was changed.
        """
        if isinstance(action, Transaction):
            for inner in action.actions:
                self.guard(inner)
        elif isinstance(action, Set | Delete):
            self._check(parse_path(action.path))
        elif isinstance(action, Merge):
            path = parse_path(action.path)
            self._check(path)
            for key in action.mapping:
                self._check((*path, key))

    def _check(self, path: Segments) -> None:
        for d, (_depth, below) in self._dests.match(path).items():
            if not below:
                reason = f"{d.dest!r} is derived: write its sources instead"
                raise ActionRejectedError(format_path(path), reason)

    def run(self, tree: Tree, changes: list[Change]) -> list[str]:
        """Recompute what *changes* affect, once each, appending their changes.

        Returns the errors of the derivations that raised (their previous
        value stays).
        """
        affected = self._affected(changes, set())
        if not affected:
            return []  # the common case: nothing depends on this write
        queued = set(affected)
        heap = [(d.order, id(d), d) for d in affected]
        heapq.heapify(heap)
        errors: list[str] = []
        while heap:
            d = heapq.heappop(heap)[2]
            try:
                value = d.compute(tree)
                new: list[Change] = []
                tree.set_derived(d.segments, value, new)
            except BaseException as exc:  # reported in the receipt
                if is_exit_request(exc):
                    raise
                errors.append(f"{d.dest}: {describe_exception(exc)}")
                continue
            changes.extend(new)
            for other in self._affected(new, queued):
                queued.add(other)
                heapq.heappush(heap, (other.order, id(other), other))
        return errors

    def _affected(
        self, changes: list[Change], queued: set[Derivation]
    ) -> list[Derivation]:
        """The derivations *changes* affect that are not *queued* yet."""
        found: list[Derivation] = []
        for change in changes:
            # Both tries cache their answers by path: a path no derivation
            # reads or writes costs two dict lookups, however many exist.
            sources = self._sources.match(change.path)
            dests = self._dests.match(change.path)
            for item, (_depth, below) in sources.items():
                d = item.derivation
                if d in queued or d in found:
                    continue
                if below and unchanged_below(change, item.segments):
                    continue
                found.append(d)
            for d, (_depth, below) in dests.items():
                # Written from above (a Set of an ancestor): put it back.
                if below and d not in queued and d not in found:
                    found.append(d)
        return found
