"""Strict JSON values: the type, validation with copying, equality and copying.

Strict means what every JSON parser accepts back: ``dict`` with ``str`` keys,
``list`` (tuples are taken as lists), ``str`` without lone surrogates, ``int``
within 64 bits, finite ``float``, ``bool`` and ``None``; nesting at most
:data:`MAX_VALUE_DEPTH` deep. Subclasses of ``int``, ``float`` and ``str``
(``IntEnum`` members, say) are stored as their plain base type.
"""

from __future__ import annotations

import math
from typing import Any, Final, TypeAlias

from ._errors import InvalidValueError

__all__ = ["JSON", "MAX_VALUE_DEPTH", "copy_json", "json_equal", "own_json"]

JSON: TypeAlias = "dict[str, JSON] | list[JSON] | str | int | float | bool | None"
"""A strict JSON value."""

MAX_VALUE_DEPTH: Final = 64
"""Deepest nesting of containers a value may have."""
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1


def own_json(value: object, what: str = "value") -> JSON:
    """Validate *value* as strict JSON and return a private deep copy of it.

    The copy is what makes a message independent of its sender: mutating the
    dict you passed to ``Set`` afterwards changes nothing in stateward.

    Raises:
        InvalidValueError: The first rule broken, naming where in the value.
    """
    # The common scalars first, checked in place; everything else by _own.
    if type(value) is int:
        if _INT_MIN <= value <= _INT_MAX:
            return value
    elif type(value) is str and value.isascii():
        return value
    owned: JSON = _own(value, what, 0)
    return owned


def _own(value: Any, where: str, depth: int) -> Any:
    # *value* is untrusted: typed Any here, checked by type() at run time.
    t = type(value)
    if t is str:
        if not value.isascii():
            _check_text(value, where)
        return value
    if t is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise InvalidValueError(
                where, "integer outside the signed/unsigned 64-bit range"
            )
        return value
    if t is bool or value is None:
        return value
    if t is float:
        if not math.isfinite(value):
            raise InvalidValueError(where, f"{value!r} is not a finite number")
        return value
    if t is dict or t is list or t is tuple:
        if depth >= MAX_VALUE_DEPTH:
            raise InvalidValueError(
                where, f"nested deeper than {MAX_VALUE_DEPTH} levels"
            )
        if t is dict:
            out: dict[str, JSON] = {}
            for key, item in value.items():
                if type(key) is not str:
                    reason = f"dict key {key!r} is a {type(key).__name__}, not a str"
                    raise InvalidValueError(where, reason)
                if not key.isascii():
                    _check_text(key, where)
                out[key] = _own(item, f"{where}[{key!r}]", depth + 1)
            return out
        return [_own(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    # Plain base types for subclasses such as IntEnum and StrEnum members.
    if isinstance(value, int):
        return _own(int(value), where, depth)
    if isinstance(value, float):
        return _own(float(value), where, depth)
    if isinstance(value, str):
        return _own(str.__str__(value), where, depth)
    raise InvalidValueError(where, f"a {t.__name__} is not JSON ({_short(value)})")


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValueError(where, "lone surrogate in a string") from None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def copy_json(value: Any) -> Any:
    """Deep-copy an already valid JSON value (no checks; faster than copy.deepcopy)."""
    t = type(value)
    if t is dict:
        return {k: copy_json(v) for k, v in value.items()}
    if t is list:
        return [copy_json(v) for v in value]
    return value


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
