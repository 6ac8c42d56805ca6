"""A subscriber's handler, and what its answer (or its exception) means.

Shared by the subscriber actors and by the remote layer's subscribers, which
run handlers in another process: the same rules for the same handler.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import reprlib
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import Final, TypeAlias, TypeGuard

import anyio

from .._errors import describe_exception, is_exit_request, utf8_text
from ..messages.acks import RAS
from ..messages.events import Resync, StateChanged

__all__ = [
    "MAX_ACK_MESSAGE",
    "NO_ANSWER",
    "NO_ANSWER_CODE",
    "RAS_BOUND",
    "SUCCESS",
    "Handler",
    "cut_message",
    "must_await",
    "must_propagate",
    "ras_of",
    "ras_of_error",
]

Handler: TypeAlias = Callable[
    [StateChanged | Resync],
    "Awaitable[int | tuple[int, str] | None] | int | tuple[int, str] | None",
]
"""A sync or async callable taking an event and returning its RAS code.

``None`` counts as success (so a plain ``print`` handler works), any other int
is the code (1 = success), a ``(code, message)`` tuple gives the Ack a message
too (``return RAS.ERROR, "disk full"``), and raising is answered as
``RAS.ERROR`` with the error's text. A sync handler runs on the event loop:
keep it quick.

Any exception a handler raises becomes its failed Ack, a ``BaseException``
included (a ``GeneratorExit``, or an ``asyncio.CancelledError`` the handler
raised itself), and the subscriber keeps running. Three things are not
answered: a real cancellation of the subscriber (it propagates, as every
cancellation must), and ``KeyboardInterrupt`` and ``SystemExit``, which stop
the whole state actor in order: every waiting sender gets
:class:`~stateward.StateBrokenError`, a persisted state closes its files and
releases its lock (every acknowledged action is on disk), and the exception
leaves :func:`~stateward.open_state` as itself, in the caller's task (or
:meth:`StateActor.run`, after the stop).
"""


SUCCESS: Final = (1, "")
"""The (RAS code, message) of a handler that succeeded."""


def must_propagate(exc: BaseException) -> bool:
    """Whether a handler's *exc* must leave the subscriber (see :data:`Handler`).

    A real cancellation, Ctrl-C and SystemExit do (in a group too); anything
    else is the handler's own failure, answered as a failed Ack. A
    cancellation is real when a cancel scope around the handler was
    cancelled or, on asyncio, when the task has a cancellation request: an
    ``asyncio.CancelledError`` the handler raised of its own has neither.
    """
    if is_exit_request(exc):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(must_propagate(inner) for inner in exc.exceptions)
    cancelled = anyio.get_cancelled_exc_class()
    if not isinstance(exc, cancelled):
        return False
    if cancelled is not asyncio.CancelledError:
        return True  # trio.Cancelled has no public constructor: always real
    if anyio.current_effective_deadline() == -math.inf:
        return True
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def must_await(result: object) -> TypeGuard[Awaitable[int | None]]:
    """Whether a handler's *result* must be awaited (cheap tests first)."""
    if type(result) is CoroutineType:
        return True
    if result is None or isinstance(result, int):
        return False
    return inspect.isawaitable(result)


def ras_of_error(exc: BaseException) -> tuple[int, str]:
    """The (RAS code, message) of a handler that raised *exc*."""
    return RAS.ERROR, cut_message(describe_exception(exc))


NO_ANSWER: Final = object()
"""Returned by a handler (internal: the remote layer's proxies) whose
subscriber gave no answer: the delivery is reported ``missing``, not failed."""
NO_ANSWER_CODE: Final = 1 << 70
"""The code :data:`NO_ANSWER` stands for: outside any RAS code a handler may return."""


MAX_ACK_MESSAGE: Final = 4096
"""The most characters an Ack's message keeps (a longer one is cut)."""
RAS_BOUND: Final = 1 << 31
"""A handler's RAS code is in ``[-RAS_BOUND, RAS_BOUND)`` (32 bits, signed)."""


def cut_message(message: str, limit: int = MAX_ACK_MESSAGE) -> str:
    """*message* cut to *limit* characters, saying so (*limit*: 64 or more)."""
    if len(message) <= limit:
        return message
    cut = f" ... (cut from {len(message):,} characters)"
    return message[: limit - len(cut)] + cut


def _text(message: str) -> str:
    """*message* as an Ack carries it: cut if long, lone surrogates made ``?``.

    An Ack says the same locally and remotely, where it crosses as JSON in
    messages of bounded size.
    """
    return utf8_text(cut_message(message))


def ras_of(result: object) -> tuple[int, str]:
    """Turn a handler's return value into (RAS code, message).

    Never raises: whatever a handler returns, its subscriber answers. A
    code must fit in 32 bits, as it must in a remote Ack; an
    int subclass is read for its value, without its own methods.
    """
    if result is None:
        return SUCCESS
    if result is NO_ANSWER:
        return NO_ANSWER_CODE, ""
    if isinstance(result, int):
        code = int.__int__(result)
        return SUCCESS if code == 1 else _code(code, "", result)
    if (
        type(result) is tuple
        and len(result) == 2
        and isinstance(result[0], int)
        and isinstance(result[1], str)
    ):
        return _code(int.__int__(result[0]), _text(str.__str__(result[1])), result)
    return RAS.INVALID, _invalid(result, "an int RAS code, (code, message) or None")


def _code(code: int, message: str, result: object) -> tuple[int, str]:
    if -RAS_BOUND <= code < RAS_BOUND:
        return code, message
    return RAS.INVALID, _invalid(result, "a RAS code of 32 bits (signed)")


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 200


def _invalid(result: object, expected: str) -> str:
    # reprlib: bounded for containers and long strings, and an object whose
    # own __repr__ raises is shown by its type instead.
    return _text(f"handler returned {_REPR.repr(result)}; expected {expected}")
