"""The files' JSON encoder: the bytes ``json.dumps`` writes, faster."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from stateward.actors.persistence import _format

_TEXT = ['"', "\\", "\n", "\x00", "\x1f", "\x7f", "é", "☺", "\U0010ffff", "a", "/"]


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 5 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 2**63 - 1, -(2**63), 2**64 - 1, rng.randrange(10**6)])
    if kind == 2:
        return rng.choice([0.5, -0.0, 1e308, 5e-324, 1 / 3, rng.random() * 1e20])
    if kind in (3, 4):
        return "".join(rng.choice(_TEXT) for _ in range(rng.randrange(6)))
    if kind in (5, 6):
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        "".join(rng.choice(_TEXT) for _ in range(3)): _value(rng, depth + 1)
        for _ in range(rng.randrange(4))
    }


def _reference(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@pytest.mark.parametrize("c_encoder", [True, False])
def test_the_encoder_writes_what_json_dumps_writes(monkeypatch, c_encoder):
    if not c_encoder:  # another Python, without the C encoder
        monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    dumps = _format._compact_encoder()
    rng = random.Random(20261206)
    for _ in range(3_000):
        value = _value(rng)
        assert dumps(value) == _reference(value)
    assert json.loads(dumps({"k": [1, "é"]})) == {"k": [1, "é"]}
    for bad in (math.nan, math.inf, [-math.inf]):
        with pytest.raises(ValueError, match="not JSON compliant"):
            dumps(bad)


def test_the_files_use_the_c_encoder_where_there_is_one():
    # The comparison above passes with the plain encoder too: check that the
    # fast one is the one in use (this is CPython, which has it).
    assert json.encoder.c_make_encoder is not None
    assert _format._dumps.__name__ == "dumps"  # (the plain one is "encode")
