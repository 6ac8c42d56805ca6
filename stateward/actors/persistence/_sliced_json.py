"""Large JSON decoded and encoded by a worker thread in short calls.

A C decoder or encoder holds the GIL for its whole call: decoding a
million-leaf checkpoint is one 1.4 s call, and the state's event loop in
the main thread cannot run meanwhile, whatever thread makes the call.
These two do the same work as many short calls, between which the GIL
passes to the loop (every 5 ms when it waits, ``sys.getswitchinterval()``):

* :func:`loads_in_slices` has the C scanner call a Python hook after each
  object it builds;
* :func:`dumps_in_slices` encodes a large container a slice of members at
  a time.

Both give what the one-call form gives, for more time in all (about 1.1x to
decode; to encode a million leaves, about 0.6 s instead of 0.06 with
orjson, 1.2 instead of 0.9 without), so they are for worker threads and
large values.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from ._format import _refuse_constant

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["decode_in_slices", "dumps_in_slices", "loads_in_slices"]

SLICE: Final = 4096
"""Members of a wide container encoded by one call."""

WIDE: Final = 64
"""A container with more members than this is encoded a slice at a time."""


def _yield(obj: dict[str, Any]) -> dict[str, Any]:
    # The scanner calls this once per object it built: Python code, where
    # the GIL may pass to another thread. Nothing else changes.
    return obj


def loads_in_slices(data: bytes | str) -> Any:
    """Decode strict JSON (NaN and Infinity refused) in short calls.

    The same value and the same errors (``ValueError``, ``RecursionError``)
    as ``json.loads(data, parse_constant=...)`` refusing constants, for
    about 1.1x its time. The GIL can pass after each object is built, so a
    tree of many objects never holds it long (at most 35 ms measured for a
    million leaves, against 1.4 s in one call); an array of a million
    numbers and nothing else would be one call (about 20 ms).
    """
    return json.loads(data, parse_constant=_refuse_constant, object_hook=_yield)


_DECODE_IN_SLICES: Final = json.JSONDecoder(
    parse_constant=_refuse_constant, object_hook=_yield
).decode


def decode_in_slices(text: str) -> Any:
    """:func:`loads_in_slices` for text, exactly as the strict record decoder.

    The same value and the same errors, messages included, as
    ``JSONDecoder(parse_constant=...).decode`` (where ``json.loads`` would
    name a byte order mark apart).
    """
    return _DECODE_IN_SLICES(text)


def dumps_in_slices(value: Any, dumps: Callable[[Any], bytes]) -> bytes:
    """Encode the valid JSON *value* as ``dumps(value)`` does, in short calls.

    *dumps* must write compact JSON (no spaces). A container with more than
    :data:`WIDE` members is written :data:`SLICE` members per call, and so
    are the narrow containers on the way to one from the root
    (``{"jobs": {...}}``); anything else is one call of *dumps*. So a large
    tree under a wide container costs a call per 4,096 members; only a very
    large value under a narrow one that is itself in a wide one is one long
    call.
    """
    parts: list[bytes] = []
    _encode(value, dumps, parts, True)
    return b"".join(parts)


def _encode(
    value: Any, dumps: Callable[[Any], bytes], parts: list[bytes], chain: bool
) -> None:
    t = type(value)
    if (
        (t is not dict and t is not list)
        or not value
        or (not chain and len(value) <= WIDE)
    ):
        parts.append(dumps(value))
        return
    # The members of a narrow container on the chain are on it too; those of
    # a wide one are sliced only if they are wide themselves.
    below = chain and len(value) <= WIDE
    is_dict = t is dict
    parts.append(b"{" if is_dict else b"[")
    # The members written together by one call of dumps: a dict's keys, a
    # list's items. (Keeping the (key, item) pairs instead made a million
    # tuples live long enough to start full collections: 50 ms each.)
    run: list[Any] = []
    first = True

    def flush() -> None:
        nonlocal first
        if run:
            if not first:
                parts.append(b",")
            chunk = {k: value[k] for k in run} if is_dict else run
            parts.append(dumps(chunk)[1:-1])
            run.clear()
            first = False

    for member in value:
        item = value[member] if is_dict else member
        k = type(item)
        if (k is dict or k is list) and item and (below or len(item) > WIDE):
            flush()
            if not first:
                parts.append(b",")
            if is_dict:
                parts.append(dumps(member))
                parts.append(b":")
            _encode(item, dumps, parts, below)
            first = False
        else:
            run.append(member)
            if len(run) >= SLICE:
                flush()
    flush()
    parts.append(b"}" if is_dict else b"]")
