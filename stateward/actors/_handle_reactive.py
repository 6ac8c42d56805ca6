"""Reactive state on a handle: derived paths and tracked reactions.

:class:`HandleReactive` is the part of :class:`~stateward.StateHandle` that
registers computations with the state actor. A base class, never used
alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from .._checks import check_callable
from .._errors import InvalidActionError
from ..paths import PathLike, format_path, parse_path
from ._derive import Derivation
from ._requests import _Register, _Request
from ._track import Reaction, Reader, first_run

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from .._json import JSON
    from ._ack import Receipt
    from ._core import _Core
    from ._mailbox import Signal

__all__ = ["HandleReactive"]


class HandleReactive:
    """Derive values and track reactions inside the state actor (a base class)."""

    __slots__ = ()

    _core: _Core
    _new_signal: Callable[[], Signal]

    if TYPE_CHECKING:

        def _check_open(self) -> None: ...

        def _wait_for(self, durable: bool | None) -> int: ...

        async def _enqueue(
            self, request: _Request, *, park: bool = True
        ) -> Receipt: ...

    async def derive(
        self, dest: PathLike, source: PathLike, fn: Callable[[JSON], object]
    ) -> Receipt:
        """Keep ``dest = fn(value at source)`` up to date, inside the state actor.

        *fn* gets a private copy of the source's value (None when missing)
        and returns JSON. It runs now (the receipt is that of writing the
        first value) and again after every action that changes the source,
        once per action, in the same revision, before any event of the action
        leaves: no subscriber sees the source and ``dest`` out of step. A
        chain (a derivation of a derived path) settles in the same action.

        *dest* is then read and subscribed to like any path, and written only
        by the derivation: an action writing at or below it is rejected
        (writing above it, the derivation puts its value back). When *fn*
        raises later, ``dest`` keeps its previous value and the action's
        receipt lists the error in ``derive_errors``. Keep *fn* quick and free
        of side effects: it runs in the state actor, between two actions.

        Raises:
            InvalidActionError: *dest* or *source* is not a plain path, they
                overlap, *dest* overlaps another derived path, or the
                derivations would form a cycle.
            ActionRejectedError: *fn* raised on the current value; nothing
                was registered.
        """
        return await self._register(
            _Register(Derivation(dest, [source], fn, many=False))
        )

    async def derive_many(
        self,
        dest: PathLike,
        sources: Iterable[PathLike],
        fn: Callable[[dict[str, JSON]], object],
    ) -> Receipt:
        """As :meth:`derive`, from several sources: ``dest = fn({source: value})``.

        Recomputed once per action however many of its sources it changed,
        never from a mix of old and new values.
        """
        if isinstance(sources, str | tuple):
            reason = "must be a list of paths (a str or a tuple is one path)"
            raise InvalidActionError("sources", reason)
        derivation = Derivation(dest, list(sources), fn, many=True)
        return await self._register(_Register(derivation))

    async def track(
        self,
        fn: Callable[[Reader], Awaitable[object] | object],
        *,
        name: str | None = None,
    ) -> Reaction:
        """Run ``fn(reader)`` now and again whenever something it read changes.

        Every ``reader.get(path)`` in a run records *path*; after an action
        changes a recorded path (or something below or above it that alters
        its value), *fn* runs again, in the reaction's own task. The recorded
        set is replaced by each run, so a branch that stops reading a path
        stops depending on it. Changes made while *fn* runs lead to one more
        run, not one per change. *fn* may be sync or async; an exception is
        logged and counted (``reaction.errors``) and the reaction goes on.
        On a persisted state a run waits until what it would read is in the
        journal.

        Returns once the first run is done. ``await reaction.untrack()``
        stops it and releases every dependency; stopping the state stops it.
        """
        await anyio.lowlevel.checkpoint()
        core = self._core
        self._check_open()
        check_callable("fn", fn)
        label = name or str(getattr(fn, "__qualname__", type(fn).__name__))
        reaction = Reaction._create(label, fn, core.tree, core.reactions)
        core.reactions.active.add(reaction)

        async def settled() -> None:
            if core.persister is None:
                await anyio.lowlevel.checkpoint()
            else:
                await core.persister.wait_durable(core.tree.revision)

        core.tg.start_soon(reaction.run, settled, name=f"stateward reaction {label!r}")
        await first_run(reaction)
        return reaction

    async def underive(self, dest: PathLike) -> None:
        """Stop deriving *dest* (its last value stays, and may be written again)."""
        await self._register(_Register(None, format_path(parse_path(dest))))

    async def _register(self, reg: _Register) -> Receipt:
        self._check_open()
        request = _Request(reg, self._new_signal(), self._wait_for(None))
        return await self._enqueue(request)
