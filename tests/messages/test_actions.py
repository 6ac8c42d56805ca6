from __future__ import annotations

import datetime
import decimal
import enum
import math
import re

import attrs
import pytest

from stateward import (
    RAS,
    Delete,
    InvalidActionError,
    InvalidPathError,
    InvalidValueError,
    Merge,
    Ping,
    Set,
    StatewardError,
    Transaction,
)


def nested(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


class Color(enum.Enum):
    RED = "red"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (math.nan, "nan is not a finite number"),
        (math.inf, "inf is not a finite number"),
        (-math.inf, "-inf is not a finite number"),
        (b"bytes", "a bytes is not JSON"),
        ({1, 2}, "a set is not JSON"),
        (datetime.datetime(2026, 1, 1), "a datetime is not JSON"),
        (decimal.Decimal("1.5"), "a Decimal is not JSON"),
        (object(), "an object is not JSON"),
        (Color.RED, "a Color is not JSON"),
        (2**64, "integer outside the signed/unsigned 64-bit range"),
        (-(2**63) - 1, "integer outside the signed/unsigned 64-bit range"),
        (10**5000, "integer outside the signed/unsigned 64-bit range"),
        ("\ud800", "lone surrogate in a string"),
        ({"\udfff": 1}, "lone surrogate in a string"),
        ({1: "a"}, "dict key 1 is an int, not a str"),
        ({None: "a"}, "dict key None is a NoneType, not a str"),
        (nested(65), "nested deeper than 64 levels"),
        (nested(10_000), "nested deeper than 64 levels"),
        ({"a": [1, {"b": math.nan}]}, "nan is not a finite number"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_bad_values_are_rejected_at_the_sender(value, reason):
    with pytest.raises(InvalidValueError, match=re.escape(reason)) as info:
        Set("a", value)
    assert isinstance(info.value, StatewardError)
    assert isinstance(info.value, ValueError)


def test_the_error_says_where_in_the_value():
    with pytest.raises(
        InvalidValueError, match=re.escape("at value['a'][1]['b']: nan")
    ):
        Set("x", {"a": [1, {"b": math.nan}]})


def test_accepted_values_are_plain_copies():
    value = {"t": (1, 2), "ras": RAS.SUCCESS, "deep": nested(63)}
    action = Set("a", value)
    assert action.value["t"] == [1, 2]
    assert type(action.value["ras"]) is int
    assert action.value is not value


@pytest.mark.parametrize(
    "build",
    [
        lambda: Set("a..b", 1),
        lambda: Delete("a.*"),
        lambda: Merge("/x//y", {}),
        lambda: Ping("\x00"),
        lambda: Set(("a", -1), 1),
    ],
)
def test_bad_paths_are_rejected_at_the_sender(build):
    with pytest.raises(InvalidPathError):
        build()


@pytest.mark.parametrize("key", ["", "a/b", "a/b.c", "*", "**", ".", "..", "\x00"])
def test_a_merge_key_must_be_a_segment_a_path_can_name(key):
    # Each key is a change at path.key: one no path can name would be an
    # event whose path does not parse back (or parses to another path), and
    # a value no get or delete can reach.
    with pytest.raises(InvalidPathError) as caught:
        Merge("jobs", {"ok": 1, key: 2})
    assert caught.value.path == ("jobs", key)


def test_a_merge_key_may_hold_dots_and_needs_room_below_its_path():
    merge = Merge("jobs", {"10.0.0.1": 1})
    assert merge.mapping == {"10.0.0.1": 1}  # (its events use the slash form)
    deepest = ".".join(["a"] * 64)
    assert Merge(deepest, {}).mapping == {}
    with pytest.raises(InvalidPathError, match="more than 64 segments"):
        Merge(deepest, {"k": 1})


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Set("a", 1, source=3), "source"),
        (lambda: Set("a", 1, id=""), "id"),
        (lambda: Set("a", 1, eq="yes"), "eq"),
        (lambda: Merge("a", [1, 2]), "mapping"),
        (lambda: Transaction(Set("a", 1)), "actions"),
        (lambda: Transaction([Set("a", 1), "Set"]), "actions"),
        (lambda: Transaction([], if_revision=-1), "if_revision"),
        (lambda: Transaction([], if_revision=True), "if_revision"),
    ],
)
def test_bad_options_are_rejected_with_the_field_named(build, field):
    with pytest.raises(InvalidActionError) as info:
        build()
    assert info.value.field == field


def test_payload_is_validated_json():
    with pytest.raises(InvalidValueError, match="at payload"):
        Set("a", 1, payload={"x": math.nan})


def test_paths_are_canonical():
    assert Set(("hosts", "10.0.0.1"), 1).path == "/hosts/10.0.0.1"
    assert Set("/a/b", 1).path == "a.b"
    assert Set(("items", 0), 1).path == "items.0"


def test_messages_are_frozen_and_compare_by_value():
    a = Set("a", 1, id="x")
    assert a == Set("a", 1, id="x")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        a.value = 2  # type: ignore[misc]


def test_shared_options_are_keyword_only():
    with pytest.raises(TypeError):
        Set("a", 1, "source")  # type: ignore[misc]


def test_ids_are_unique():
    assert len({Set("a", 1).id for _ in range(1000)}) == 1000


def test_ras_codes():
    assert RAS.is_success(1)
    assert not RAS.is_success(0)
    assert not RAS.is_success(42)
    assert RAS.SUCCESS == 1
