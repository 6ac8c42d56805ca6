"""Random and mutated input for the decoder fuzz tests (seeded: reproducible).

A decoder given any of these must end in its typed error or in a valid
result: never another exception, never a result its readers cannot use.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import random
    from collections.abc import Iterator


def random_json(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(12 if depth < 6 else 7)
    if choice == 0:
        return rng.choice([None, True, False])
    if choice == 1:
        return rng.choice([0, -1, 2**63, 2**64, -(2**63) - 1, 10**30])
    if choice == 2:
        return rng.choice([0.5, float("nan"), float("inf"), -float("inf"), 1e308])
    if choice in (3, 4):
        return "".join(
            chr(rng.choice([65, 0x263A, 0xD800, 0, 0x10FFFF])) for _ in range(3)
        )
    if choice == 5:
        return "[" * rng.choice([10, 70, 2000]) + "]" * rng.choice([0, 10, 70])
    if choice == 6:
        return rng.choice(["s", "d", "p", "a", "x", ""])
    if choice in (7, 8):
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    if choice == 9:
        return {str(random_json(rng, 6)): random_json(rng, depth + 1) for _ in range(3)}
    if choice == 10:
        nested: Any = 1
        for _ in range(rng.choice([5, 65, 130])):
            nested = [nested]
        return nested
    return rng.random()


def mutate(rng: random.Random, value: Any) -> Any:
    """Replace one random node of *value* by random JSON."""
    if rng.random() < 0.3 or not isinstance(value, list | dict) or not value:
        return random_json(rng)
    if isinstance(value, list):
        copy = list(value)
        i = rng.randrange(len(copy))
        copy[i] = mutate(rng, copy[i])
        return copy
    copy = dict(value)
    key = rng.choice(list(copy))
    copy[key] = mutate(rng, copy[key])
    return copy


def dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


def inputs(rng: random.Random, valid: Any, n: int) -> Iterator[bytes]:
    """n payloads: random bytes, random text, random JSON, mutated valid ones."""
    for i in range(n):
        kind = i % 4
        if kind == 0:
            yield bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        elif kind == 1:
            text = "".join(chr(rng.randrange(0x250)) for _ in range(rng.randrange(40)))
            yield text.encode("utf-8", "surrogatepass")
        elif kind == 2:
            yield dumps(random_json(rng))
        else:
            yield dumps(mutate(rng, valid))
