"""The size limits every action is checked against when it is built.

They bound what one action can cost the state actor (which applies it in one
step, with every other task waiting) and what a message can cost the remote
layer, whose default message cap is the same 1 MiB. They are process-wide:
set them once, at start-up, before building actions.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import TYPE_CHECKING, Final, final

import attrs

from ._checks import check_int
from ._errors import InvalidActionError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["MAX_TRANSACTION_DEPTH_CEILING", "Limits", "limits", "set_limits"]

MAX_TRANSACTION_DEPTH_CEILING: Final = 64
"""The highest ``max_transaction_depth`` may be set to."""


@final
@attrs.frozen
class Limits:
    """The limits in force (see :func:`limits` and :func:`set_limits`)."""

    max_action_bytes: int = 1 << 20
    """Largest estimated JSON size of one action's values (a Transaction's
    added up), in bytes: 1 MiB, the remote layer's message cap."""
    max_transaction_actions: int = 10_000
    """Most actions one Transaction may hold, nested ones counted one by one."""
    max_transaction_depth: int = 16
    """Deepest nesting of Transactions inside Transactions."""


_current = Limits()
_unbounded: ContextVar[bool] = ContextVar("stateward_unbounded", default=False)


def value_bytes() -> int | None:
    """The size limit of a ``Set`` value built here: None inside :func:`unbounded`."""
    return None if _unbounded.get() else _current.max_action_bytes


@contextlib.contextmanager
def unbounded() -> Iterator[None]:
    """Build ``Set`` values of any size, in this context only (internal).

    For a state's own files read back whole (a checkpoint's tree, set with
    one action): they hold what the state held, which no limit on one
    message was meant to refuse. Every other action, in every other task
    and thread, keeps the limits.
    """
    token = _unbounded.set(True)
    try:
        yield
    finally:
        _unbounded.reset(token)


def limits() -> Limits:
    """Return the limits in force (thread-safe, never blocks)."""
    return _current


def set_limits(
    *,
    max_action_bytes: int | None = None,
    max_transaction_actions: int | None = None,
    max_transaction_depth: int | None = None,
) -> Limits:
    """Change the process-wide limits; return the ones they replace.

    Options left out keep their value. Actions built before the change keep
    the checks they passed. Thread-safe (the limits are replaced whole).

    Raises:
        InvalidActionError: An option is not an int in its range.
    """
    global _current
    previous = _current
    changes: dict[str, int] = {}
    if max_action_bytes is not None:
        check_int("max_action_bytes", max_action_bytes, 64)
        changes["max_action_bytes"] = max_action_bytes
    if max_transaction_actions is not None:
        check_int("max_transaction_actions", max_transaction_actions, 1)
        changes["max_transaction_actions"] = max_transaction_actions
    if max_transaction_depth is not None:
        check_int("max_transaction_depth", max_transaction_depth, 1)
        if max_transaction_depth > MAX_TRANSACTION_DEPTH_CEILING:
            reason = (
                f"must be <= {MAX_TRANSACTION_DEPTH_CEILING} "
                f"(got {max_transaction_depth})"
            )
            raise InvalidActionError("max_transaction_depth", reason)
        changes["max_transaction_depth"] = max_transaction_depth
    _current = attrs.evolve(previous, **changes)
    return previous
