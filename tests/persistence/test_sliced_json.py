"""Large JSON decoded and encoded in short calls: the same result, the GIL passed on.

A checkpoint's tree is decoded, and for a persisted state encoded, by a
worker thread in short calls (``stateward.actors.persistence._sliced_json``), so that
the event loop can run meanwhile. What they give must be what the one-call
forms give, byte for byte, and between the calls another thread must run.
"""

from __future__ import annotations

import gc
import json
import random
import sys
import threading
from typing import Any

import pytest

from stateward.actors.persistence._format import _dumps, dumps_bytes
from stateward.actors.persistence._sliced_json import (
    SLICE,
    WIDE,
    dumps_in_slices,
    loads_in_slices,
)

from .test_encoder import _random_value, _same

SEED = 20261207


def _stdlib(value: Any) -> bytes:
    return _dumps(value).encode()


def _wide(rng: random.Random, depth: int = 0) -> Any:
    """Random values in the shapes the slicing tells apart.

    Wide containers (more than WIDE members, some more than SLICE), wide
    ones inside wide ones, narrow chains down to a wide one, and empty and
    small containers anywhere.
    """
    shape = rng.randrange(6 if depth < 3 else 1)
    if shape == 0:
        return _random_value(rng, 0 if depth == 0 else 8)  # (8: no deep nests)
    if shape == 1:  # narrow: a chain, or a wrapper under a wide container
        return {rng.choice(["a", "é", ""]): _wide(rng, depth + 1)}
    if shape == 2:
        return [_wide(rng, depth + 1) for _ in range(rng.randrange(3))]
    # (one level of wide containers may hold another, of a few members each)
    width = rng.choice([WIDE, WIDE + 1, 200, SLICE + 7] if depth == 0 else [WIDE + 1])
    below = depth + 1 if depth == 0 and width < 100 else 3  # 3: small values
    if shape == 3:
        return {f"k{i}\u00e9": _wide(rng, below) for i in range(width)}
    if shape == 4:
        return [_wide(rng, below) for _ in range(width)]
    return {"e": {}, "l": [], "w": [rng.randrange(9) for _ in range(width)]}


def _values() -> list[Any]:
    rng = random.Random(SEED)
    return [
        {"jobs": {f"k{i}": {"n": i} for i in range(SLICE * 2 + 3)}},
        [{"x": list(range(WIDE + 1))}],
        {},
        [],
        *[_wide(rng) for _ in range(60)],
    ]


@pytest.mark.parametrize("dumps", [dumps_bytes, _stdlib], ids=["default", "stdlib"])
def test_slices_encode_the_same_bytes(dumps: Any) -> None:
    for value in _values():
        assert dumps_in_slices(value, dumps) == dumps(value)


def test_slices_decode_the_same_values() -> None:
    for i, value in enumerate(_values()):
        # compact as the journal writes, or indented as a checkpoint is
        text = json.dumps(value, indent=2).encode() if i < 8 else _stdlib(value)
        got = loads_in_slices(text)
        assert _same(got, json.loads(text))
        assert _stdlib(got) == _stdlib(value)  # the order of keys too


def test_slices_refuse_what_the_strict_decoder_refuses() -> None:
    duplicate = loads_in_slices(b'{"a": 1, "b": 2, "a": 3}')
    assert duplicate == {"a": 3, "b": 2}
    assert list(duplicate) == ["a", "b"]
    for bad in (b'{"a": NaN}', b"[Infinity]", b"-Infinity", b'{"a": 1', b"{} x"):
        with pytest.raises(ValueError):  # noqa: PT011 - json.loads's own errors
            loads_in_slices(bad)
    with pytest.raises(RecursionError):
        loads_in_slices(b"[" * 100_000 + b"]" * 100_000)


def _turns_beside(work: Any) -> int:
    """How often this thread ran while another one ran *work*."""
    turns = 0
    done = threading.Event()
    started = threading.Event()

    def worker() -> None:
        started.set()
        work()
        done.set()

    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    # A collection started by the decoder's allocations runs Python code
    # (finalizers of earlier tests' garbage, gc.callbacks), where the GIL
    # changes hands: the one C call then counted about as many turns as the
    # slices did (220 against 212, once in the whole suite). Without the
    # collector, only the slices let the other thread in.
    gc.collect()
    collecting = gc.isenabled()
    gc.disable()
    try:
        thread = threading.Thread(target=worker)
        thread.start()
        started.wait(10)
        while not done.is_set():
            turns += 1
            done.wait(0.0001)  # (blocks without the GIL, then wants it back)
        thread.join(10)
    finally:
        sys.setswitchinterval(previous)
        if collecting:
            gc.enable()
    return turns


def test_other_threads_run_while_slices_are_made() -> None:
    # One call of the C decoder or encoder holds the GIL throughout: another
    # thread gets at most a turn before and after it. The slices give many.
    value = {"jobs": {f"k{i}": {"n": i, "s": "ok"} for i in range(200_000)}}
    text = _stdlib(value)
    whole_turns = _turns_beside(lambda: json.loads(text))
    assert _turns_beside(lambda: loads_in_slices(text)) > 10 + whole_turns
    assert _turns_beside(lambda: dumps_in_slices(value, dumps_bytes)) > 10
