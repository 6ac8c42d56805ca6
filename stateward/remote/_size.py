"""Whether a JSON value is surely too large for one stream entry, cheaply.

Encoding a value to learn its size costs as much as encoding it: a fifth
of a second, on the owner's loop, for a tree of 300,000 leaves. A lower
bound added up while walking the value, and stopped at the cap, answers
for a value far over it after about the cap's worth.
"""

from __future__ import annotations

import itertools
from typing import Any, Final

from .protocol import MAX_MESSAGE_BYTES

__all__ = ["over_cap"]


def over_cap(value: object, cap: int = MAX_MESSAGE_BYTES) -> bool:
    """Whether *value* surely encodes to more than *cap* bytes of JSON.

    By a lower bound (a string's characters and quotes, a key's, a
    container's brackets and separators, one byte a number), added up
    while walking *value*, a large container a slice of members at a time,
    and stopped as soon as it passes *cap*. The walk costs about 0.2 us a
    node, up to about *cap*'s worth of them: 17 ms for a tree of 300,000
    leaves (``{"k1": {"n": 1}, ...}``), whose encoding takes 0.18-0.29 s,
    and about 0.1 s at most (a list of small numbers). False says nothing
    sure.
    """
    total = 0
    stack: list[Any] = [value]
    pop, push, push_all = stack.pop, stack.append, stack.extend
    while stack:
        node = pop()
        t = type(node)
        if t is str:
            total += len(node) + 2
        elif t is dict:
            total += 1 + 3 * len(node)  # {} and, per member, "": and ,
            if len(node) > _SLICE:
                push(iter(node.items()))
            else:
                total += sum(map(len, node))
                push_all(node.values())
        elif t is list:
            total += 1 + len(node)  # [] and ,
            push(iter(node)) if len(node) > _SLICE else push_all(node)
        elif t is _MEMBERS:
            members = list(itertools.islice(node, _SLICE))
            if members:
                push(node)  # (the rest, later)
                total += sum(len(k) for k, _ in members)
                push_all(v for _, v in members)
        elif t is _ITEMS:
            items = list(itertools.islice(node, _SLICE))
            if items:
                push(node)
                push_all(items)
        else:
            total += 1
        if total > cap:
            return True
    return False


_SLICE: Final = 1024
_MEMBERS: Final[type] = type(iter({}.items()))
_ITEMS: Final[type] = type(iter([]))
