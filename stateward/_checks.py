"""The option checks every public constructor and call shares.

Each raises :class:`~stateward.InvalidActionError` naming the option, the
rule and the value, so that a bad option fails where it is given.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, Final, cast

from ._errors import InvalidActionError, short_repr
from ._json import is_text

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "MAX_MAILBOX",
    "absolute_path",
    "bool_validator",
    "check_bool",
    "check_int",
    "check_seconds",
    "int_validator",
    "seconds_validator",
]


def check_int(
    field: str,
    value: object,
    minimum: int,
    *,
    optional: bool = False,
    maximum: int | None = None,
) -> None:
    """*value* must be an int >= *minimum*, <= *maximum* (or None, when *optional*)."""
    if optional and value is None:
        return
    if (
        type(value) is not int
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        none = "None or " if optional else ""
        most = "" if maximum is None else f" and <= {maximum}"
        reason = (
            f"must be {none}an int >= {minimum}{most} (got {short_repr(value, 60)})"
        )
        raise InvalidActionError(field, reason)


def check_text(field: str, value: str) -> None:
    """*value* must be text UTF-8 can hold: no lone surrogate.

    For the strings that journal records, reports and messages to other
    processes carry (an action's id, a subscriber's name): one that could
    not be encoded would fail there, not here.
    """
    if not is_text(value):
        raise InvalidActionError(field, f"lone surrogate in {value!r:.60}")


def check_callable(field: str, value: object) -> None:
    """*value* must be callable (a handler, a callback, a function)."""
    if not callable(value):
        reason = f"must be callable (got {short_repr(value, 60)})"
        raise InvalidActionError(field, reason)


def check_bool(field: str, value: object, *, optional: bool = False) -> None:
    """*value* must be True or False (or None, when *optional*)."""
    if type(value) is not bool and not (optional and value is None):
        none = " or None" if optional else ""
        raise InvalidActionError(
            field, f"must be a bool{none} (got {short_repr(value, 60)})"
        )


def check_seconds(
    field: str, value: object, *, positive: bool = False, optional: bool = False
) -> None:
    """*value* must be a finite number of seconds, > 0 or >= 0 (or None)."""
    if optional and value is None:
        return
    ok = type(value) in (int, float)  # not bool, not a numeric string
    if ok:
        seconds = cast("float", value)
        ok = (seconds > 0 if positive else seconds >= 0) and seconds < math.inf
    if not ok:
        none = "None or " if optional else ""
        bound = "> 0" if positive else ">= 0"
        reason = (
            f"must be {none}a number of seconds {bound} (got {short_repr(value, 60)})"
        )
        raise InvalidActionError(field, reason)


MAX_MAILBOX: Final = 1 << 20
"""The largest mailbox (and history, action log) size accepted: memory stays
bounded by what a user can mean."""


def bool_validator(*, optional: bool = False) -> Callable[[Any, Any, object], None]:
    """An attrs validator: :func:`check_bool` on the field."""

    def validate(_inst: Any, attr: Any, value: object) -> None:
        check_bool(attr.name, value, optional=optional)

    return validate


def int_validator(
    minimum: int, maximum: int | None = None
) -> Callable[[Any, Any, object], None]:
    """An attrs validator: :func:`check_int` on the field."""

    def validate(_inst: Any, attr: Any, value: object) -> None:
        check_int(attr.name, value, minimum, maximum=maximum)

    return validate


def seconds_validator(
    *, positive: bool = False, optional: bool = False
) -> Callable[[Any, Any, object], None]:
    """An attrs validator: :func:`check_seconds` on the field."""

    def validate(_inst: Any, attr: Any, value: object) -> None:
        check_seconds(attr.name, value, positive=positive, optional=optional)

    return validate


def absolute_path(field: str, value: str | os.PathLike[str]) -> str:
    """*value* as an absolute path, fixed now: a later ``os.chdir`` must not move it.

    Raises:
        InvalidActionError: It is not a non-empty path without NUL, that the
            filesystem's encoding can hold.
    """
    try:
        path: object = os.fspath(value)  # (bytes too, at run time: refused)
        if isinstance(path, str):
            os.fsencode(path)  # (a lone surrogate: no file can be named so)
    except (TypeError, UnicodeEncodeError):
        path = value
    else:
        if isinstance(path, str) and path and "\0" not in path:
            return os.path.abspath(path)
    reason = f"must be a non-empty path without NUL (got {path!r:.200})"
    raise InvalidActionError(field, reason)
