"""The bad-input table: every entry refused with a typed error at the sender."""

from __future__ import annotations

import datetime
import decimal
import math

import pytest

from stateward import (
    Delete,
    InvalidActionError,
    InvalidPathError,
    InvalidValueError,
    Merge,
    Ping,
    Set,
    StatewardError,
    Transaction,
    limits,
    open_state,
)


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


class _Weird:
    pass


BAD_PATHS = {
    "empty segment": "a..b",
    "leading dot": ".a",
    "trailing dot": "a.",
    "slash empty segment": "/a//b",
    "dot-dot": "/a/../b",
    "dot": "/a/./b",
    "NUL": "a.\x00.b",
    "10,000 segments": ".".join(["a"] * 10_000),
    "huge segment": "a" * 5_000,
    "huge path": "a." * 10_000,
    "non-str segment": ("a", 1.5),
    "negative index": ("a", -1),
    "None segment": ("a", None),
    "bytes path": b"a.b",
    "wildcard in a path": "a.*",
    "globstar in a path": "a.**",
    "lone surrogate": "a.\ud800",
}

BAD_VALUES = {
    "NaN": math.nan,
    "Infinity": math.inf,
    "-Infinity": -math.inf,
    "bytes": b"x",
    "set": {1},
    "datetime": datetime.datetime(2026, 1, 1),
    "decimal": decimal.Decimal("1.5"),
    "object": _Weird(),
    "huge int": 2**64,
    "very negative int": -(2**63) - 1,
    "lone surrogate": "\udc00",
    "lone surrogate key": {"\ud800": 1},
    "non-str key": {1: "a"},
    "tuple key": {(1,): "a"},
    "nesting 65": _nested(65),
    "nesting 10,000": _nested(10_000),
    "NaN deep inside": {"a": [1, {"b": math.nan}]},
    "over the size limit": "x" * (1 << 20),
    "many small items over the limit": [0] * 200_000,
}


@pytest.mark.parametrize("path", BAD_PATHS.values(), ids=BAD_PATHS.keys())
@pytest.mark.parametrize("build", [Set, Delete, Ping, Merge], ids=lambda b: b.__name__)
def test_bad_paths_are_refused(build, path):
    args = (path, 1) if build is Set else (path, {}) if build is Merge else (path,)
    with pytest.raises(InvalidPathError):
        build(*args)


@pytest.mark.parametrize("value", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values_are_refused(value):
    with pytest.raises(InvalidValueError):
        Set("a", value)
    with pytest.raises(InvalidValueError):
        Merge("a", {"k": value})
    with pytest.raises(InvalidValueError):
        Set("a", 1, payload=value)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Set("a", 1, source=5), "source"),
        (lambda: Set("a", 1, id=""), "id"),
        (lambda: Set("a", 1, id="x" * 300), "id"),
        (lambda: Set("a", 1, eq="yes"), "eq"),
        (lambda: Delete("a", missing_ok=1), "missing_ok"),
        (lambda: Merge("a", [("k", 1)]), "mapping"),
        (lambda: Transaction(Set("a", 1)), "actions"),
        (lambda: Transaction([1]), "actions"),
        (lambda: Transaction([], if_revision=-1), "if_revision"),
        (lambda: Transaction([], if_revision=True), "if_revision"),
        (lambda: Transaction([Set("a", 1)] * 10_001), "actions"),
    ],
)
def test_bad_options_are_refused(build, field):
    with pytest.raises(InvalidActionError) as info:
        build()
    assert info.value.field == field


@pytest.mark.anyio
async def test_bad_input_changes_nothing():
    """Every row above, sent to a live state: typed errors, 0 state changes."""
    refused = 0
    async with open_state({"a": 0}) as state:
        before = (state.revision, await state.get(""))
        for path in BAD_PATHS.values():
            with pytest.raises(StatewardError):
                await state.send(Set(path, 1))
            refused += 1
        for value in BAD_VALUES.values():
            with pytest.raises(StatewardError):
                await state.send(Set("a", value))
            refused += 1
        assert (state.revision, await state.get("")) == before
    print(f"bad-input table: {refused} inputs refused, 0 state changes")
    assert refused == len(BAD_PATHS) + len(BAD_VALUES)
    assert limits().max_action_bytes == 1 << 20
