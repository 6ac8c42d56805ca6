"""The bytes of snapshots and journal records: orjson where installed, the same JSON.

Whatever encodes them, what is read back must be the value that was written,
types included (an int stays an int, -0.0 stays a float), and a value orjson
refuses must still be written, by the stdlib's encoder.
"""

from __future__ import annotations

import builtins
import math
import random
from typing import TYPE_CHECKING, Any

from needs import unavailable

from stateward._json import check_json
from stateward.actors.persistence import _format
from stateward.actors.persistence._format import _dumps, dumps_bytes, loads_strict

if TYPE_CHECKING:
    import pytest

SEED = 20261207

_EDGES: list[Any] = [
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,  # the largest int a value may hold
    0.1,
    -0.0,
    1e-7,  # orjson spells it 1e-7, the stdlib 1e-07
    1e16,
    1e308,
    5e-324,
    1.5,
    "",
    "caf\u00e9 \u263a \U0001f600",
    '\x00\x1f\n\t"\\/\u2028\u2029\x7f',
    True,
    False,
    None,
    {"": [], "a.b": {}, "\u00e9": [None]},
]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    """Any value a state may hold (checked JSON), some of them deep."""
    choice = rng.randrange(9 if depth < 8 else 5)
    if choice == 0:
        return rng.choice(_EDGES)
    if choice == 1:
        return rng.randrange(-(2**63), 2**64)
    if choice == 2:
        return rng.uniform(-1, 1) * 10.0 ** rng.randrange(-320, 308)
    if choice in (3, 4):
        return "".join(chr(rng.randrange(1, 0xD800)) for _ in range(rng.randrange(6)))
    if choice in (5, 6):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    if choice == 7:
        keys = [rng.choice(["", "a", "\u00e9", "k.1", "\x00"]) for _ in range(4)]
        return {key: _random_value(rng, depth + 1) for key in keys}
    nested: Any = rng.choice(_EDGES)
    for _ in range(rng.choice([5, 64, 128])):
        nested = [nested]
    return nested


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 is not 1.0 here)."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(map(_same, a, b))
    if type(a) is float:
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


def _values() -> list[Any]:
    rng = random.Random(SEED)
    values = [_random_value(rng) for _ in range(3_000)]
    for value in values:
        check_json(value, "value", 200)  # (what a tree may hold)
    return [*_EDGES, _EDGES, *values]


def test_what_is_written_reads_back_as_the_value_itself() -> None:
    for value in _values():
        written = dumps_bytes(value)
        assert _same(loads_strict(written, "t", "value"), value), value
        # The stdlib would have written the same JSON, spelling aside.
        plain = loads_strict(_dumps(value), "t", "value")
        assert _same(loads_strict(written, "t", "value"), plain)


def test_orjson_writes_them_where_installed() -> None:
    # The comparisons above would pass with the stdlib's encoder alone.
    try:
        import orjson
    except ImportError:
        unavailable("orjson (pip install 'stateward[fast]')")
    assert dumps_bytes([1e-7, "\u00e9"]) == orjson.dumps([1e-7, "\u00e9"])
    assert dumps_bytes([1e-7]) == b"[1e-7]" != _dumps([1e-7]).encode()


def test_what_orjson_refuses_the_stdlib_writes() -> None:
    # Nothing a state holds, but the encoder must not fail on it: deeper
    # than orjson's limit, or an int past 64 bits.
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    for value in (deep, [2**70], {"k": -(2**64)}):
        assert dumps_bytes(value) == _dumps(value).encode()


def test_without_orjson_the_stdlib_writes_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_import = builtins.__import__

    def no_orjson(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "orjson":
            raise ImportError("no orjson here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_orjson)
    plain = _format._bytes_encoder()
    for value in _values()[:300]:
        assert plain(value) == _dumps(value).encode()
