"""Actions: the typed commands a worker sends to the state actor.

Every action is a frozen attrs class validated when it is built, so a bad path
or a non-JSON value raises at the sender, never inside the actor. Values are
validated and deep-copied at construction: the message owns its data, and
mutating the dict you passed in afterwards changes nothing.

Options shared by every action (keyword-only):

* ``source``: who sent it (a free-form name, carried to every event);
* ``payload``: any JSON, carried unchanged to every event of the action;
* ``id``: a unique id (generated when omitted), carried to every event.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias, cast, final

import attrs

from .. import _limits
from .._checks import bool_validator, check_text
from .._errors import InvalidActionError
from .._json import _INT_MAX, _INT_MIN, JSON, json_size, own_json
from ..paths import PathLike, check_keys_below, format_path, parse_path

__all__ = ["Action", "Delete", "EqualityOption", "Merge", "Ping", "Set", "Transaction"]

EqualityOption: TypeAlias = "bool | Callable[[JSON, JSON], bool]"
"""``True``: a write equal (as JSON) to the current value changes nothing and
emits nothing. ``False``: always write and emit. A callable ``eq(old, new) ->
bool``: your own notion of "equal" (it runs inside the state actor, so keep it
quick and free of side effects). It receives private copies of the current and
the new value: nothing it does to them reaches the tree."""

_ID_PREFIX = os.urandom(6).hex()
_ID_COUNTER = itertools.count(1)


def _new_id() -> str:
    # Unique per process (a counter) and across processes (a random prefix);
    # ~10x cheaper than uuid4, which matters once per action.
    return f"{_ID_PREFIX}-{next(_ID_COUNTER)}"


def _canonical(path: PathLike) -> str:
    if type(path) is str:
        return _canonical_str(path)
    return format_path(parse_path(path))


@functools.lru_cache(maxsize=65536)
def _canonical_str(path: str) -> str:
    return format_path(parse_path(path))


def _own_payload(value: object) -> JSON:
    if value is None:  # the default: skip the call
        return None
    return own_json(value, "payload", max_bytes=_limits._current.max_action_bytes)


def _own_value(value: object) -> JSON:
    # The common scalars in place (one call per Set): a str this short is
    # within any size limit (the smallest allowed is 64 bytes).
    if type(value) is int:
        if _INT_MIN <= value <= _INT_MAX:
            return value
    elif type(value) is str and len(value) <= 62 and value.isascii():
        return value
    return own_json(value, "value", max_bytes=_limits.value_bytes())


def _check_source(
    _inst: object, attr: attrs.Attribute[str | None], value: object
) -> None:
    if value is None:  # the default
        return
    if type(value) is not str:
        reason = f"must be a str or None (got {type(value).__name__})"
        raise InvalidActionError(attr.name, reason)
    limit = _limits._current.max_action_bytes
    if len(value) > limit:
        # (it is in every event and journal record of the action: bounded as
        # its values are, see stateward.limits())
        reason = f"longer than max_action_bytes ({len(value):,} > {limit:,})"
        raise InvalidActionError(attr.name, reason)
    check_text(attr.name, value)


def _check_id(_inst: object, attr: attrs.Attribute[str], value: object) -> None:
    if type(value) is not str or not value or len(value) > 256:
        reason = f"must be a non-empty str of <= 256 characters (got {value!r})"
        raise InvalidActionError(attr.name, reason)
    check_text(attr.name, value)  # (its journal record could not be encoded)


def _check_eq(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not bool and not callable(value):
        reason = f"must be True, False or a callable eq(old, new) (got {value!r})"
        raise InvalidActionError(attr.name, reason)


@attrs.frozen
class Action:
    """The base of every action; not sent by itself."""

    source: str | None = attrs.field(
        default=None, kw_only=True, validator=_check_source
    )
    """Who sent the action; carried to its events."""
    payload: JSON = attrs.field(default=None, kw_only=True, converter=_own_payload)
    """Free JSON carried unchanged to every event of the action."""
    id: str = attrs.field(factory=_new_id, kw_only=True, validator=_check_id)
    """A unique id: in events, in receipts and (later) for de-duplication."""


@final
@attrs.frozen
class Set(Action):
    """Write *value* at *path*, creating missing intermediate dicts.

    A digit segment on a list replaces that element, or appends when it equals
    the list's length. With ``eq=True`` (the default) a value equal to the
    current one changes nothing and emits nothing.
    """

    path: str = attrs.field(converter=_canonical)
    """The canonical path (dot form, or slash form when a key holds a dot)."""
    value: JSON = attrs.field(converter=_own_value)
    """The value, validated as strict JSON and privately copied; at most
    :attr:`~stateward.Limits.max_action_bytes` (estimated JSON size)."""
    eq: EqualityOption = attrs.field(default=True, kw_only=True, validator=_check_eq)
    """When an equal write is skipped; see :data:`EqualityOption`."""


@final
@attrs.frozen
class Delete(Action):
    """Remove the node at *path*; a list element removed shifts the ones after it.

    A missing path is a no-op, or :class:`PathNotFoundError` with
    ``missing_ok=False``. The root cannot be deleted (``Set("", {})`` clears it).
    """

    path: str = attrs.field(converter=_canonical)
    """The canonical path."""
    missing_ok: bool = attrs.field(
        default=True, kw_only=True, validator=bool_validator()
    )
    """Whether deleting a missing path is a quiet no-op."""


def _own_mapping(value: object) -> dict[str, JSON]:
    if not isinstance(value, Mapping):
        raise InvalidActionError(
            "mapping", f"must be a mapping (got {type(value).__name__})"
        )
    limit = _limits._current.max_action_bytes
    owned = own_json(dict(value), "mapping", max_bytes=limit)
    assert isinstance(owned, dict)  # own_json keeps a dict a dict
    return owned


def _check_keys(
    inst: Merge, _attr: attrs.Attribute[Any], value: dict[str, JSON]
) -> None:
    # Each key becomes a path of its own (its events', the journal's): one
    # no path could name ("", "a/b", "*") would be a change nobody can read,
    # delete or parse back from an event.
    check_keys_below(parse_path(inst.path), value)


@final
@attrs.frozen
class Merge(Action):
    """Shallow-merge *mapping* into the dict at *path* (created when missing).

    Each key is a separate change at ``path.key``, skipped when equal (``eq``),
    so each key must be a valid path segment below *path* (not empty, no
    ``/``, not ``*`` or ``**``; dots are fine): else an ``InvalidPathError``.
    """

    path: str = attrs.field(converter=_canonical)
    """The canonical path of the target dict."""
    mapping: dict[str, JSON] = attrs.field(
        converter=_own_mapping, validator=_check_keys
    )
    """The keys to write, validated and privately copied."""
    eq: EqualityOption = attrs.field(default=True, kw_only=True, validator=_check_eq)
    """When a key's equal write is skipped; see :data:`EqualityOption`."""


@final
@attrs.frozen
class Ping(Action):
    """Notify the subscribers of *path* without changing anything.

    It takes a revision like a change, so it is ordered with the changes.
    """

    path: str = attrs.field(converter=_canonical)
    """The canonical path."""


def _own_actions(value: object) -> tuple[Action, ...]:
    if isinstance(value, Action) or not isinstance(value, list | tuple):
        reason = f"must be a list or tuple of actions (got {type(value).__name__})"
        raise InvalidActionError("actions", reason)
    limits = _limits._current
    if len(value) > limits.max_transaction_actions:
        reason = _too_many(len(value), limits.max_transaction_actions)
        raise InvalidActionError("actions", reason)
    for i, item in enumerate(value):
        if not isinstance(item, Action) or type(item) is Action:
            reason = f"item {i} is not an action: {item!r}"
            raise InvalidActionError("actions", reason)
    count, size = _measure(value, 1, limits)
    if count > limits.max_transaction_actions:
        raise InvalidActionError(
            "actions", _too_many(count, limits.max_transaction_actions)
        )
    if size > limits.max_action_bytes:
        reason = (
            f"the actions' values add up to more than {limits.max_action_bytes} "
            "bytes, the size limit of one action (see stateward.limits())"
        )
        raise InvalidActionError("actions", reason)
    return tuple(value)


def _too_many(count: int, limit: int) -> str:
    return (
        f"a Transaction may hold at most {limit} actions, nested ones included "
        f"(got {count}; see stateward.limits())"
    )


def _measure(
    actions: list[Action] | tuple[Action, ...], depth: int, limits: _limits.Limits
) -> tuple[int, int]:
    """(actions, estimated bytes) of *actions*, nested ones counted one by one.

    Stops early once either limit is passed. The recursion is bounded by
    ``max_transaction_depth``: deeper nesting raises before descending.
    """
    if depth > limits.max_transaction_depth:
        reason = (
            f"Transactions nested deeper than {limits.max_transaction_depth} "
            "levels (see stateward.limits())"
        )
        raise InvalidActionError("actions", reason)
    count = 0
    size = 0
    for action in actions:
        t = type(action)
        if t is Transaction:
            inner = cast("Transaction", action)
            more, extra = _measure(inner.actions, depth + 1, limits)
            count += more
            size += extra
        else:
            count += 1
            room = limits.max_action_bytes - size
            if t is Set:
                size += json_size(cast("Set", action).value, room)
            elif t is Merge:
                size += json_size(cast("Merge", action).mapping, room)
        size += json_size(action.payload, limits.max_action_bytes - size)
        if action.source is not None:
            size += len(action.source) + 2  # (a str, as json_size counts one)
        if count > limits.max_transaction_actions or size > limits.max_action_bytes:
            break
    return count, size


def _check_revision(
    _inst: object, attr: attrs.Attribute[int | None], value: object
) -> None:
    if value is not None and (type(value) is not int or value < 0):
        raise InvalidActionError(
            attr.name, f"must be an int >= 0 or None (got {value!r})"
        )


@final
@attrs.frozen
class Transaction(Action):
    """Apply *actions* in order, all or nothing, as one revision.

    If one of them is rejected, the tree is left exactly as it was and the
    whole transaction is rejected. With ``if_revision``, it applies only when
    the state is at that revision (optimistic concurrency): read, compute,
    then write back only if nobody wrote in between.
    """

    actions: tuple[Action, ...] = attrs.field(converter=_own_actions)
    """The actions, applied in this order."""
    if_revision: int | None = attrs.field(
        default=None, kw_only=True, validator=_check_revision
    )
    """Apply only if the state's revision is exactly this."""
