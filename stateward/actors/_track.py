"""Auto-tracked reactions: rerun a function when anything it read changes.

``track(fn)`` runs ``fn(reader)`` in its own task. Every ``reader.get(path)``
records *path* as a dependency; after an action changes a recorded path, the
reaction is marked dirty and runs again. The recorded set is replaced on
every run: a branch that stops reading a path stops depending on it.

Finding the reactions an action affects goes through a pattern trie of their
dependencies, so it costs what the matching reactions cost, not what all of
them do. A reaction never runs inside the state actor: a slow one delays only
itself, and changes made while it runs are folded into one more run.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any, final

import anyio

from .._changes import MISSING, unchanged_below
from .._errors import DurabilityError
from .._json import copy_json
from ..paths import PatternTrie, format_path, parse_path
from ._handler import must_propagate
from ._util import NoPublicConstructor

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .._changes import Change
    from .._json import JSON
    from ..paths import PathLike, Segments
    from ..tree import Tree

__all__ = ["Reaction", "Reactions", "Reader"]

logger = logging.getLogger(__name__)


class _Dep:
    __slots__ = ("reaction", "segments")

    def __init__(self, reaction: Reaction, segments: Segments) -> None:
        self.reaction = reaction
        self.segments = segments


@final
class Reader(metaclass=NoPublicConstructor):
    """What a tracked function reads the state through; every read is recorded."""

    __slots__ = ("_reaction",)

    def __init__(self, reaction: Reaction) -> None:
        self._reaction = reaction

    @property
    def revision(self) -> int:
        """The state's current revision."""
        return self._reaction._tree.revision

    def get(self, path: PathLike = "", default: JSON = None) -> JSON:
        """Return a copy of the value at *path* (or *default*), and depend on it."""
        reaction = self._reaction
        segments = parse_path(path)
        reaction._depend(segments)
        found = reaction._tree.lookup(segments)
        return default if found is MISSING else copy_json(found)


@final
class Reaction(metaclass=NoPublicConstructor):
    """A tracked function and its task; made by :meth:`StateHandle.track`.

    Concurrency: the function runs in this reaction's own task, never in the
    state actor. Reads within one run of a synchronous function see one
    revision; an async one may see several, and then runs again.
    """

    def __init__(
        self,
        name: str,
        fn: Callable[[Reader], Awaitable[object] | object],
        tree: Tree,
        registry: Reactions,
    ) -> None:
        self.name = name
        self._fn = fn
        self._tree = tree
        self._registry = registry
        self._deps: dict[Segments, _Dep] = {}
        self._reading: set[Segments] = set()
        self._dirty = anyio.Event()
        self._dirty.set()  # the first run
        self._idle = anyio.Event()
        self._first = anyio.Event()
        self._closed = False
        self.runs = 0
        """How many times the function ran."""
        self.errors = 0
        """How many runs raised (logged; the reaction keeps going)."""
        self.last_error: BaseException | None = None
        """The exception of the last run that raised."""

    @property
    def dependencies(self) -> tuple[str, ...]:
        """The paths the last run read, sorted."""
        return tuple(sorted(format_path(s) for s in self._deps))

    @property
    def closed(self) -> bool:
        """Whether it was untracked (or its state stopped)."""
        return self._closed

    def _stopped(self) -> bool:
        return self._closed

    def idle(self) -> bool:
        """Whether it neither runs nor has a change waiting."""
        return self._idle.is_set()

    async def wait_idle(self) -> None:
        """Wait until it neither runs nor has a change waiting."""
        while not self._idle.is_set():
            await self._idle.wait()

    async def untrack(self) -> None:
        """Stop: the task ends and every dependency is released. Idempotent."""
        self._close()
        await anyio.lowlevel.checkpoint()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for dep in self._deps.values():
            self._registry.trie.remove(dep.segments, dep)
        self._deps.clear()
        self._registry.active.discard(self)
        self._dirty.set()
        self._idle.set()
        self._first.set()

    def mark(self) -> None:
        """A dependency changed: run again (changes during a run fold into one)."""
        if not self._closed:
            self._idle = anyio.Event()
            self._dirty.set()

    def _depend(self, segments: Segments) -> None:
        self._reading.add(segments)
        if segments not in self._deps and not self._closed:
            dep = self._deps[segments] = _Dep(self, segments)
            self._registry.trie.add(segments, dep)

    async def run(self, wait_durable: Callable[[], Awaitable[object]]) -> None:
        """The reaction's task: run on every change, until untracked."""
        try:
            while True:
                await self._dirty.wait()
                if self._stopped():  # untracked while it waited
                    break
                self._dirty = anyio.Event()
                try:
                    await wait_durable()  # never react to what a crash could undo
                except DurabilityError as exc:  # the journal failed: stop
                    self.last_error = exc
                    logger.warning("tracked reaction %r stops: %s", self.name, exc)
                    break
                self._reading = set()
                try:
                    result = self._fn(Reader._create(self))
                    if inspect.isawaitable(result):
                        await result
                except BaseException as exc:
                    if must_propagate(exc):
                        raise
                    self.errors += 1
                    self.last_error = exc
                    logger.exception("tracked reaction %r raised", self.name)
                self.runs += 1
                for segments in [s for s in self._deps if s not in self._reading]:
                    self._registry.trie.remove(segments, self._deps.pop(segments))
                self._first.set()
                if not self._dirty.is_set():
                    self._idle.set()
        finally:
            self._close()


class Reactions:
    """Every reaction of one state actor, and the trie of what they read."""

    def __init__(self) -> None:
        self.trie: PatternTrie[_Dep] = PatternTrie()
        self.active: set[Reaction] = set()

    def __bool__(self) -> bool:
        return bool(self.active)

    def notify(self, changes: list[Change]) -> None:
        """Mark the reactions that read a path *changes* touched."""
        trie = self.trie
        for change in changes:
            for dep, (_depth, below) in trie.match(change.path).items():
                if below and unchanged_below(change, dep.segments):
                    continue
                dep.reaction.mark()


def first_run(reaction: Reaction) -> Awaitable[Any]:
    """Wait for the first run of *reaction* to finish."""
    return reaction._first.wait()
