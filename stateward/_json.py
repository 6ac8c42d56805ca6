"""Strict JSON values: the type, validation with copying, equality and copying.

Strict means what every JSON parser accepts back: ``dict`` with ``str`` keys,
``list`` (tuples are taken as lists), ``str`` without lone surrogates, ``int``
within 64 bits, finite ``float``, ``bool`` and ``None``; nesting at most
:data:`MAX_VALUE_DEPTH` deep. Subclasses of ``int``, ``float`` and ``str``
(``IntEnum`` members, say) are stored as their plain base type.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Final, NamedTuple, TypeAlias, cast

from ._errors import InvalidValueError, short_repr

__all__ = [
    "JSON",
    "MAX_VALUE_DEPTH",
    "check_json",
    "copy_json",
    "copy_within",
    "is_text",
    "json_equal",
    "json_size",
    "own_json",
    "surely_larger",
]

JSON: TypeAlias = "dict[str, JSON] | list[JSON] | str | int | float | bool | None"
"""A strict JSON value."""

MAX_VALUE_DEPTH: Final = 64
"""Deepest nesting of containers a value may have."""
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1


_UNLIMITED: Final = 1 << 62
_NUMBER_SIZE: Final = 8  # what a number counts for in json_size (an estimate)


def own_json(
    value: object, what: str = "value", *, max_bytes: int | None = None
) -> JSON:
    """Validate *value* as strict JSON and return a private deep copy of it.

    The copy is what makes a message independent of its sender: mutating the
    dict you passed to ``Set`` afterwards changes nothing in stateward.

    With *max_bytes*, a value whose :func:`json_size` exceeds it is refused
    as soon as the walk passes the limit (a huge value costs no more than
    the limit to refuse).

    Raises:
        InvalidValueError: The first rule broken, naming where in the value.
    """
    # The common scalars first, checked in place; everything else by _own.
    if type(value) is int:
        if _INT_MIN <= value <= _INT_MAX:
            return value
    elif (
        type(value) is str
        and value.isascii()
        and (max_bytes is None or len(value) + 2 <= max_bytes)
    ):
        return value
    budget = [_UNLIMITED if max_bytes is None else max_bytes]
    try:
        owned: JSON = _own(value, 0, budget)
    except _Invalid as exc:
        # Where it is, built only now: one string per value walked, made
        # whether or not anything was wrong, cost a third of the walk.
        raise InvalidValueError(
            what + "".join(reversed(exc.below)), exc.reason
        ) from None
    return owned


class _Invalid(Exception):
    """A rule broken inside :func:`_own`; each level adds its key on the way up."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.below: list[str] = []  # "[key]" of each level, innermost first


def _own(value: Any, depth: int, budget: list[int]) -> Any:
    # *value* is untrusted: typed Any here, checked by type() at run time.
    # *budget* holds the bytes still allowed (json_size's estimate).
    t = type(value)
    if t is str:
        if not value.isascii() and not _valid_text(value):
            raise _Invalid("lone surrogate in a string")
        _spend(budget, len(value) + 2)
        return value
    if t is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise _Invalid("integer outside the signed/unsigned 64-bit range")
        _spend(budget, _NUMBER_SIZE)
        return value
    if t is bool or value is None:
        _spend(budget, 5)
        return value
    if t is float:
        if not math.isfinite(value):
            msg = f"{value!r} is not a finite number"
            raise _Invalid(msg)
        _spend(budget, _NUMBER_SIZE)
        return value
    if t is dict or t is list or t is tuple:
        if depth >= MAX_VALUE_DEPTH:
            msg = f"nested deeper than {MAX_VALUE_DEPTH} levels"
            raise _Invalid(msg)
        _spend(budget, 2 + len(value))
        depth += 1
        if t is dict:
            out: dict[str, JSON] = {}
            for key, item in value.items():
                if type(key) is not str:
                    kind = _a(type(key).__name__)
                    reason = f"dict key {short_repr(key, 60)} is {kind}, not a str"
                    raise _Invalid(reason)
                if not key.isascii() and not _valid_text(key):
                    raise _Invalid("lone surrogate in a string")
                _spend(budget, len(key) + 3)
                try:
                    out[key] = _own(item, depth, budget)
                except _Invalid as exc:
                    exc.below.append(f"[{key!r}]")
                    raise
            return out
        copy: list[JSON] = []
        for i, item in enumerate(value):
            try:
                copy.append(_own(item, depth, budget))
            except _Invalid as exc:
                exc.below.append(f"[{i}]")
                raise
        return copy
    # Plain base types for subclasses such as IntEnum and StrEnum members,
    # converted by the base type's own method: a subclass's __int__ or
    # __float__ (which may raise anything) is never called.
    if isinstance(value, int):
        return _own(int.__int__(value), depth, budget)
    if isinstance(value, float):
        return _own(float.__float__(value), depth, budget)
    if isinstance(value, str):
        return _own(str.__str__(value), depth, budget)
    msg = f"{_a(t.__name__)} is not JSON ({short_repr(value, 60)})"
    raise _Invalid(msg)


def _spend(budget: list[int], size: int) -> None:
    budget[0] -= size
    if budget[0] < 0:
        raise _Invalid(
            "larger than the size limit of one action (see stateward.limits())"
        )


def is_text(text: str) -> bool:
    """Whether *text* is text UTF-8 can hold (no lone surrogate); ASCII at once."""
    return text.isascii() or _valid_text(text)


def _valid_text(text: str) -> bool:
    """Whether *text* is valid Unicode text (no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _a(noun: str) -> str:
    """*noun* with its indefinite article: "an int", "a dict"."""
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"


def json_size(value: Any, limit: int = _UNLIMITED) -> int:
    """Estimate the size of a valid JSON *value*'s encoding, in bytes.

    Strings and keys count their length plus quotes, numbers 8, ``true``,
    ``false`` and ``null`` 5, containers 2 plus one separator per item. The
    walk stops once the total passes *limit* (the result is then > *limit*),
    so measuring a huge value costs no more than the limit.
    """
    t = type(value)
    if t is dict or t is list:
        return _walk_size(value, limit, _ESTIMATE)
    if t is str:  # (a scalar, the common value and payload: no walk)
        return len(value) + 2
    return _NUMBER_SIZE if t is int or t is float else 5


def surely_larger(value: Any, cap: int) -> bool:
    """Whether the valid JSON *value* surely encodes to more than *cap* bytes.

    By a lower bound (a string's characters and quotes, a key's, a
    container's brackets and separators, one byte a number or a literal),
    added up while walking *value* and stopped as soon as it passes *cap*:
    a value far over the cap is known to be so without being encoded. The
    walk stops after about *cap*'s worth of nodes: 4 ms against 1 MiB for
    a tree of 300,000 leaves (``{"k1": {"n": 1}, ...}``), whose encoding
    takes 0.18-0.29 s. False says nothing sure.
    """
    return _walk_size(value, cap, _LOWER_BOUND) > cap


class _Weights(NamedTuple):
    """What each part of a JSON value counts for in :func:`_walk_size`."""

    container: int  # a dict's or a list's brackets
    member: int  # per dict member, besides its key: quotes, colon, comma
    item: int  # per list item: a comma
    number: int
    literal: int  # true, false, null


_ESTIMATE: Final = _Weights(2, 4, 1, _NUMBER_SIZE, 5)
_LOWER_BOUND: Final = _Weights(1, 3, 1, 1, 1)
_SLICE: Final = 1024  # members of a large container pushed at a time
_MEMBERS: Final[type] = type(iter({}.items()))
_ITEMS: Final[type] = type(iter([]))


def _walk_size(value: Any, limit: int, weights: _Weights) -> int:
    """The size of *value* by *weights*, or a total over *limit* once past it.

    A large container is walked a slice of members at a time, so that a
    walk stopped early has not listed the rest.
    """
    container, member, item, number, literal = weights
    total = 0
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        t = type(node)
        if t is str:
            total += len(node) + 2
        elif t is dict:
            total += container + member * len(node)
            if len(node) > _SLICE:
                stack.append(iter(node.items()))
            else:
                for key, child in node.items():
                    total += len(key)
                    stack.append(child)
        elif t is list:
            total += container + item * len(node)
            if len(node) > _SLICE:
                stack.append(iter(node))
            else:
                stack.extend(node)
        elif t is int or t is float:
            total += number
        elif t is _MEMBERS:
            members = list(itertools.islice(node, _SLICE))
            if members:
                stack.append(node)  # (the rest, later)
                for key, child in members:
                    total += len(key)
                    stack.append(child)
        elif t is _ITEMS:
            items = list(itertools.islice(node, _SLICE))
            if items:
                stack.append(node)
                stack.extend(items)
        else:
            total += literal
        if total > limit:
            return total
    return total


def check_json(
    value: Any, where: str = "value", max_depth: int = MAX_VALUE_DEPTH
) -> None:
    """Validate *value* as strict JSON in place, without copying it.

    For values decoded from files, which are already private: the same rules
    as :func:`own_json`, the size limit aside, and *max_depth* levels (a whole
    tree nests deeper than one value: a path's depth plus its value's).

    Raises:
        InvalidValueError: The first rule broken, naming where in the value.
    """
    t = type(value)  # the common scalars first, in place
    if (t is int and _INT_MIN <= value <= _INT_MAX) or (t is str and value.isascii()):
        return
    # Level by level: each level's depth is known, so nothing is allocated
    # per value (a stack of (value, depth) tuples made a million tuples for
    # a million-leaf tree, and the garbage collector walked them again and
    # again: 0.90 s instead of 0.35 s).
    level: list[Any] = [value]
    depth = 0
    while level:
        below: list[Any] = []
        for item in level:
            t = type(item)
            if t is str:
                if not item.isascii():
                    _check_text(item, where)
            elif t is int:
                if not _INT_MIN <= item <= _INT_MAX:
                    reason = "integer outside the signed/unsigned 64-bit range"
                    raise InvalidValueError(where, reason)
            elif t is float:
                if not math.isfinite(item):
                    raise InvalidValueError(where, f"{item!r} is not a finite number")
            elif t is dict or t is list:
                if depth >= max_depth:
                    reason = f"nested deeper than {max_depth} levels"
                    raise InvalidValueError(where, reason)
                if t is dict:
                    for key in item:
                        if type(key) is not str:
                            raise InvalidValueError(where, "a dict key is not a str")
                        if not key.isascii():
                            _check_text(key, where)
                    below.extend(item.values())
                else:
                    below.extend(item)
            elif not (t is bool or item is None):
                raise InvalidValueError(where, f"{_a(t.__name__)} is not JSON")
        level = below
        depth += 1


def check_decoded(value: object, what: str) -> JSON:
    """Check, in place, a whole value decoded from a JSON file; return it.

    What the decoder made is private and shares nothing, so it needs no
    copy: :func:`check_json`'s walk (no size limit, the depth of a value),
    and only when that fails, :func:`own_json`'s, whose error names the keys
    and indices down to the bad value.

    Raises:
        InvalidValueError: The first rule broken.
    """
    try:
        check_json(value, what)
    except InvalidValueError:
        own_json(value, what)  # the same rules: raises, naming where
        raise
    return cast("JSON", value)


def _check_text(text: str, where: str) -> None:
    if not _valid_text(text):
        raise InvalidValueError(where, "lone surrogate in a string")


def copy_json(value: Any) -> Any:
    """Deep-copy an already valid JSON value (no checks; faster than copy.deepcopy)."""
    t = type(value)
    if t is dict:
        return {k: copy_json(v) for k, v in value.items()}
    if t is list:
        return [copy_json(v) for v in value]
    return value


def copy_within(value: Any, limit: int) -> Any:
    """Deep-copy the dict or list *value*; None if it holds over *limit* values.

    Counts as it copies (the container itself is one value, and each item
    one more), and stops as soon as the budget is spent: a container too
    long for what is left is not even walked, so a large value costs no
    more than a copy of *limit* values.
    """
    if len(value) < limit:
        for item in value.values() if type(value) is dict else value:
            if type(item) in _CONTAINERS:
                break
        else:
            return value.copy()  # flat: its items are immutable
    left = [limit - 1]
    try:
        return _copy_within(value, left)
    except _TooLarge:
        return None


class _TooLarge(Exception):
    pass


_CONTAINERS: Final = (dict, list)


def _copy_within(value: Any, left: list[int]) -> Any:
    # (Scalars are taken in the comprehensions, without a call each.)
    left[0] -= len(value)
    if left[0] < 0:
        raise _TooLarge
    if type(value) is dict:
        return {
            k: _copy_within(v, left) if type(v) in _CONTAINERS else v
            for k, v in value.items()
        }
    return [_copy_within(v, left) if type(v) in _CONTAINERS else v for v in value]


def json_equal(a: Any, b: Any) -> bool:
    """Compare two JSON values as JSON does: ``1``, ``1.0`` and ``True`` all differ."""
    if a is b:
        return True
    t = type(a)
    if t is not type(b):
        return False
    if t is dict:
        if len(a) != len(b):
            return False
        for k, v in a.items():
            other = b.get(k, _ABSENT)
            if other is _ABSENT or not json_equal(v, other):
                return False
        return True
    if t is list:
        return len(a) == len(b) and all(
            json_equal(x, y) for x, y in zip(a, b, strict=True)
        )
    return bool(a == b)


_ABSENT: Final = object()
