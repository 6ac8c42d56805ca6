"""Which client may write where: ``serve_redis(writable=...)``.

An allow-list per client name of the path prefixes it may write at; a
client not named may write nothing. The owner checks every path an action
writes (each of a Transaction's) before it applies anything; a request
outside the list is refused and dead-lettered, never half applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, final

from .._errors import InvalidActionError
from ..messages.actions import Transaction
from ..paths import parse_path
from . import protocol

if TYPE_CHECKING:
    from ..messages.actions import Action
    from ..paths import Segments

__all__ = ["Writable", "paths_of"]


@final
class Writable:
    """The allow-list of one server (None: every client writes anywhere).

    Immutable once built; read on the owner's loop.
    """

    __slots__ = ("_prefixes",)

    def __init__(self, writable: object) -> None:
        """Check and keep *writable*: client name -> list or tuple of paths.

        Raises:
            InvalidActionError: Not a mapping, a bad client name, or a client
                not mapped to a list or tuple of paths (one str would allow
                each of its letters).
        """
        self._prefixes: dict[str, tuple[Segments, ...]] | None = None
        if writable is not None:
            self._prefixes = {
                protocol.check_name(client, "writable"): _prefixes(client, prefixes)
                for client, prefixes in _mapping(writable).items()
            }

    def check(self, client: str, action: Action) -> None:
        """Raise ``InvalidActionError`` if *client* may not write all of *action*."""
        allowed = self._prefixes
        if allowed is None:
            return
        prefixes = allowed.get(client, ())
        for path in paths_of(action):
            if not any(path[: len(p)] == p for p in prefixes):
                shown = ".".join(path) or "the root"
                reason = f"client {client!r} may not write at {shown!r}"
                raise InvalidActionError("path", reason)


def paths_of(action: Action) -> list[tuple[str, ...]]:
    """Every path *action* writes at (a Transaction's, each of its own)."""
    if isinstance(action, Transaction):
        return [p for inner in action.actions for p in paths_of(inner)]
    return [parse_path(action.path)]  # type: ignore[attr-defined]


def _mapping(writable: object) -> Mapping[object, object]:
    if not isinstance(writable, Mapping):
        reason = f"must map client names to path prefixes (got {writable!r:.60})"
        raise InvalidActionError("writable", reason)
    return writable


def _prefixes(client: object, prefixes: object) -> tuple[Segments, ...]:
    # One str is no list of prefixes: "jobs" would allow "j", "o", "b", "s".
    if not isinstance(prefixes, list | tuple):
        reason = f"{client!r} must map to a list of paths (got {prefixes!r:.60})"
        raise InvalidActionError("writable", reason)
    return tuple(parse_path(p) for p in prefixes)
