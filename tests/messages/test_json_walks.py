"""The two walks of a JSON value: own_json (messages) and check_json (files)."""

from __future__ import annotations

import math
import re

import pytest

from stateward import InvalidValueError, Set
from stateward._json import MAX_VALUE_DEPTH, check_json, own_json


def nested(depth: int, leaf: object = 1) -> object:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (math.nan, "nan is not a finite number"),
        (2**64, "integer outside the signed/unsigned 64-bit range"),
        ("\ud800", "lone surrogate in a string"),
        ({"\udfff": 1}, "lone surrogate in a string"),
        ({1: "a"}, "not a str"),
        (nested(MAX_VALUE_DEPTH + 1), f"nested deeper than {MAX_VALUE_DEPTH} levels"),
        # One deep branch beside shallow ones: the depth is the branch's.
        (
            {"a": 1, "b": [nested(MAX_VALUE_DEPTH)], "c": {}},
            f"nested deeper than {MAX_VALUE_DEPTH} levels",
        ),
        ({"a": [1, {"b": b"x"}]}, "a bytes is not JSON"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_both_walks_refuse_the_same_values(value: object, reason: str) -> None:
    with pytest.raises(InvalidValueError, match=re.escape(reason)):
        own_json(value)
    with pytest.raises(InvalidValueError, match=re.escape(reason)):
        check_json(value)


@pytest.mark.parametrize(
    "value",
    [
        nested(MAX_VALUE_DEPTH),
        {"a": nested(MAX_VALUE_DEPTH - 1), "b": [1, "x", None, True, 1.5]},
        {"jobs": {f"k{i}": {"n": i, "tags": ["a"]} for i in range(1_000)}},
        [],
        "\u00e9",
    ],
    ids=["deepest", "mixed", "wide", "empty", "text"],
)
def test_both_walks_accept_the_same_values(value: object) -> None:
    assert own_json(value) == value
    check_json(value)


def test_the_error_names_keys_and_indices_down_to_the_bad_value() -> None:
    with pytest.raises(
        InvalidValueError, match=re.escape("at value[1]['b'][0]: nan")
    ) as info:
        Set("x", [0, {"a": 1, "b": [math.nan]}])
    assert info.value.where == "value[1]['b'][0]"
    with pytest.raises(InvalidValueError, match=re.escape("at payload['a']: a set")):
        own_json({"a": {1}}, "payload")


def test_a_wide_tree_is_checked_without_a_tuple_per_value() -> None:
    # The walk keeps one list per level: checking a tree allocates nothing
    # per value that the garbage collector would have to walk.
    import gc

    tree = {"jobs": {f"k{i}": {"n": i} for i in range(20_000)}}
    gc.collect()
    before = gc.get_count()[0]
    gc.disable()
    try:
        check_json(tree)
        allocated = gc.get_count()[0] - before
    finally:
        gc.enable()
    assert allocated < 100
