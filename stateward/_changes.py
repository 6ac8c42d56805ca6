"""What a write reports: its changes, and the values read out of them.

:class:`~stateward.tree.Tree` returns a list of :class:`Change` for every
action it applies; routing, derivations, reactions, the journal and the
feed read them. Whether a ``Set`` is a change at all is :func:`same_value`'s
to say (its ``eq`` option, which may be a callable of the user's), and
:func:`unchanged_below` tells a write above a path that left the value at
that path as it was, which routing and the reactive layer use to skip what
did not change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, NamedTuple

from ._errors import ActionRejectedError, describe_exception, is_exit_request
from ._json import JSON, copy_json, json_equal
from .paths import Segments, is_index

if TYPE_CHECKING:
    from .messages.actions import EqualityOption
    from .messages.events import ChangeKind

__all__ = ["MISSING", "Change", "lookup_in", "same_value", "unchanged_below"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final[_Missing] = _Missing()
"""Returned by a lookup of a path that does not exist."""


class Change(NamedTuple):
    """One change made by an action, before it becomes events."""

    path: Segments
    kind: ChangeKind
    old: JSON
    new: JSON


def lookup_in(value: JSON, path: Segments) -> JSON | _Missing:
    """The live value at *path* below *value*, or :data:`MISSING` (read-only)."""
    node: Any = value
    for seg in path:
        t = type(node)
        if t is dict:
            if seg not in node:
                return MISSING
            node = node[seg]
        elif t is list and is_index(seg):
            i = int(seg)
            if i >= len(node):
                return MISSING
            node = node[i]
        else:
            return MISSING
    found: JSON = node
    return found


def unchanged_below(change: Change, pattern: Segments) -> bool:
    """Tell whether a write above *pattern* left the value at *pattern* as it was."""
    rest = pattern[len(change.path) :]
    old = lookup_in(change.old, rest)
    new = lookup_in(change.new, rest)
    if old is MISSING or new is MISSING:
        return old is new
    return json_equal(old, new)


def same_value(eq: EqualityOption, old: JSON, new: JSON) -> bool:
    """Whether writing *new* over *old* is no change, as the ``eq`` option says.

    Raises:
        ActionRejectedError: The ``eq`` callable raised (anything but an
            exit request): the action is rejected, the actor goes on.
    """
    if eq is True:
        return json_equal(old, new)
    if eq is False:
        return False
    try:
        # Copies: a user's eq() never holds or changes a node of the tree, nor
        # the action's own value.
        return bool(eq(copy_json(old), copy_json(new)))
    except BaseException as exc:
        if is_exit_request(exc):
            raise
        reason = f"the eq callable raised {describe_exception(exc)}"
        raise ActionRejectedError("", reason) from exc
