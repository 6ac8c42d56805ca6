"""Decoder fuzz: random and mutated input into every decoder that reads files.

Every input must end in the decoder's typed error or in a valid result; a
record that fails changes nothing in the tree it was replayed on.
"""

from __future__ import annotations

import json
import random
import warnings
from typing import Any

import pytest
from fuzzlib import dumps, inputs

from stateward import CheckpointError, CorruptStateError
from stateward.actors._checkpoint_files import _read_manifest
from stateward.actors.persistence import (
    apply_record,
    encode_record,
    parse_snapshot,
    read_segment,
    replay_records,
)
from stateward.actors.persistence._format import _segment_header, _snapshot_header
from stateward.tree import Tree

SEED = 20261202
PER_DECODER = 5_000  # x 4 decoders = 20,000 inputs

_VALID_TREE = {"jobs": {"a": {"n": 1, "tags": ["x", "y"]}, "b": None}, "k": 1.5}
_VALID_OPS: list[Any] = [
    ["a", "id-1", "worker", {"p": 1}],
    ["s", ["jobs", "a", "n"], 2],
    ["d", ["jobs", "b"]],
    ["p", ["k"]],
]


def test_snapshot_decoder_fuzz():
    rng = random.Random(SEED)
    counts = {"refused": 0, "accepted": 0}
    for body in inputs(rng, _VALID_TREE, PER_DECODER):
        data = _snapshot_header(b"\1" * 16, 7, body) + body  # a valid frame
        try:
            snap = parse_snapshot(data, "fuzz.snap")
        except CorruptStateError:
            counts["refused"] += 1
            continue
        counts["accepted"] += 1
        Tree.adopt(snap.root, revision=snap.revision).read("")  # usable
        json.dumps(snap.root, allow_nan=False)  # strict JSON through and through
    print(f"snapshot decoder: {PER_DECODER} inputs, {counts}")
    assert sum(counts.values()) == PER_DECODER
    assert counts["refused"] > PER_DECODER // 2


def test_the_fast_and_sliced_snapshot_decoders_decide_every_input_alike():
    # Snapshots are read with orjson where installed (recovery, the process
    # that rebuilds one): on every input the outcome must be the strict
    # decoder's, refused with the same reason or taken as the same tree, to
    # the type (2**64 read as a float would be taken, and not the same).
    from stateward.actors.persistence._snapshot import _decode, fast_loads, loads_sliced

    fast = fast_loads()
    assert fast is not None, "the test extra installs orjson"

    def outcome(body: bytes, loads: Any, exact: bool = False) -> tuple[str, str]:
        try:
            root = _decode(body, b"\1" * 16, 7, "fuzz.snap", loads, exact=exact).root
        except CorruptStateError as exc:
            return "refused", exc.reason
        return "taken", repr(root)

    rng = random.Random(SEED)
    taken = 0
    # What json.loads takes from bytes besides UTF-8: other encodings, a
    # byte order mark, a surrogate written in UTF-8.
    text = json.dumps(_VALID_TREE)
    other = [text.encode(e) for e in ("utf-16", "utf-16-be", "utf-32", "utf-8-sig")]
    other.append(b'{"a": "\xed\xa0\x80"}')
    for body in [*other, *inputs(rng, _VALID_TREE, PER_DECODER)]:
        strict = outcome(body, None)
        assert outcome(body, fast) == strict, body
        # and the strict decoder in short calls, beside a live state
        assert outcome(body, loads_sliced, exact=True) == strict, body
        taken += strict[0] == "taken"
    print(f"fast snapshot decoder: {PER_DECODER} inputs, {taken} taken, all alike")
    assert taken > PER_DECODER // 10


def test_record_decoder_fuzz():
    rng = random.Random(SEED + 1)
    counts = {"refused": 0, "applied": 0}
    for payload in inputs(rng, _VALID_OPS, PER_DECODER):
        tree = Tree(_VALID_TREE, revision=3)
        before = tree.read("")
        changes: list[Any] = []
        try:
            apply_record(tree, 4, payload, "fuzz.wal", changes)
        except CorruptStateError:
            counts["refused"] += 1
            assert tree.read("") == before  # nothing half-applied
            assert tree.revision == 3
            assert changes == []
            continue
        counts["applied"] += 1
        json.dumps(tree.read(""), allow_nan=False)
    print(f"record decoder: {PER_DECODER} inputs, {counts}")
    assert sum(counts.values()) == PER_DECODER
    assert counts["refused"] > PER_DECODER // 2


_ONE_WRITE: list[Any] = [
    ["a", "id-2", None, None],
    ["s", ["jobs", "c", "n"], {"x": [1]}],
]
_ONE_WRITE_CASES = [
    b'[["a","i",null,null],["s",["jobs","a","n"],3]]',  # an update
    b'[["a","i","w",{"p":1}],["s",["new","deep","er"],{"v":[1,"\xc3\xa9"]}]]',
    b'[["a","i",null,null],["s",["jobs","a","tags","0"],"z"]]',  # a list on the way
    b'[["a","i",null,null],["s",["jobs","a","tags"],[]]]',
    b'[["a","i",null,null],["s",["jobs","a","tags","0","x"],"z"]]',
    b'[["a","i",null,null],["s",["k","x"],1]]',  # a scalar on the way
    b'[["a","i",null,null],["s",["k","x","y"],1]]',
    b'[["a","i",null,null],["s",["k"],{"a":1}]]',
    b'[["a","i",null,null],["s",[],{"root":1}]]',  # the root
    b'[["a","i",null,null],["s",["j\xc3\xa9","\\ud800"],1]]',  # non-ASCII segment
    b'[["a","i",null,null],["s",["j","\\ud800"],1]]',  # a lone surrogate
    b'[["a","i",null,null],["s",["j"],"\\udc00"]]',
    b'[["a","i",null,null],["s",["j"],1e999]]',  # decodes as inf
    b'[["a","i",null,null],["s",["j"],18446744073709551616]]',  # over 64 bits
    b'[["a","i",null,[1e999]],["s",["j"],1]]',  # a bad payload
    b'[["a",1,null,null],["s",["j"],1]]',  # a bad identity
    b'[["a","i",null],["s",["j"],1]]',
    b'[["a","i",null,null],["s",["j",1],1]]',  # a bad path
    b'[["a","i",null,null],["s","j",1]]',
    b'[["a","i",null,null],["d",["jobs","a"]]]',  # a delete
    b'[["s",["j"],1],["a","i",null,null]]',  # out of the usual order
    b'[["a","i",null,null],["x",["j"],1]]',
    b'[["a","i",null,null],["s",["j"],1,2]]',
    b'[["a","i",null,null],["s",["j"],1]] ',  # whitespace after it
    b'[["a","i",null,null],["s",["j"],1]]]',  # something after it
    b'[["a","i\\ud800",null,null],["s",["j"],1]]',  # a lone surrogate: the id
    b'[["a","i","w\\udc00",null],["s",["j"],1]]',  # and the source
    b'[["a","i\xc3\xa9","w\xc3\xa9",null],["s",["j"],1]]',  # non-ASCII: fine
]


def _replay_both_ways(payload: bytes) -> None:
    # Recovery (no changes wanted) takes faster ways for one-write records
    # (replay_records' inline one, and the tree's); they must accept, refuse
    # and build exactly what the general way does.
    trees = [Tree(_VALID_TREE, revision=3) for _ in range(3)]
    outcomes = []
    for tree, changes in ((trees[0], None), (trees[1], [])):
        try:
            identity = apply_record(tree, 4, payload, "fuzz.wal", changes)
        except CorruptStateError as exc:
            outcomes.append(("refused", exc.reason))
        else:
            outcomes.append(("applied", identity))
    try:
        size = replay_records(trees[2], 3, [b"skipped", payload], "fuzz.wal")
    except CorruptStateError as exc:
        outcomes.append(("refused", exc.reason))
    else:
        assert size == len(payload)
        outcomes.append(("applied", outcomes[1][1]))  # (it returns no identity)
    assert outcomes[0] == outcomes[1] == outcomes[2], payload
    dumped = [(t.revision, json.dumps(t.root, sort_keys=True)) for t in trees]
    assert dumped[0] == dumped[1] == dumped[2], payload


@pytest.mark.parametrize(
    "payload",
    [
        *_ONE_WRITE_CASES,
        dumps(["a", "i", None, None]),  # no list of operations
        dumps([["a", "i", None, None], ["s", ["j"] * 66, 1]]),  # too deep a path
    ],
)
def test_recovery_replays_a_record_as_the_events_do(payload):
    _replay_both_ways(payload)


@pytest.mark.parametrize("identity", [b'"i\\ud800",null', b'"i","w\\udc00"'])
def test_a_record_whose_id_or_source_is_no_text_is_refused(identity):
    # No action has one (it is checked where the action is built): what held
    # it would fail where it is encoded again (a reply's id, a feed entry).
    payload = b'[["a",' + identity + b',null],["s",["j"],1]]'
    with pytest.raises(CorruptStateError, match="lone surrogate"):
        replay_records(Tree({}, revision=0), 1, [payload], "fuzz.wal")


def test_recovery_replays_fuzzed_records_as_the_events_do():
    for payload in inputs(random.Random(SEED + 4), _ONE_WRITE, PER_DECODER):
        _replay_both_ways(payload)


def test_the_fast_way_is_taken_for_one_write(monkeypatch):
    # The comparisons above would pass with no fast way at all: check that
    # recovery's common record does not go through the general write.
    def general_way(*args: object) -> None:
        raise AssertionError("the general way")

    monkeypatch.setattr(Tree, "_set", general_way)
    tree = Tree(_VALID_TREE, revision=3)
    apply_record(tree, 4, _ONE_WRITE_CASES[1], "fuzz.wal")
    assert tree.read("new.deep.er") == {"v": [1, "\u00e9"]}
    assert tree.revision == 4


@pytest.mark.parametrize("payload", _ONE_WRITE_CASES[:2])
def test_replay_records_writes_one_write_records_itself(monkeypatch, payload):
    # Recovery's loop decodes, checks and writes its common record without
    # apply_record or the tree's general write.
    from stateward.actors.persistence import _segments

    def general_way(*args: object) -> None:
        raise AssertionError("the general way")

    monkeypatch.setattr(_segments, "apply_record", general_way)
    monkeypatch.setattr(Tree, "_set", general_way)
    tree = Tree(_VALID_TREE, revision=3)
    assert replay_records(tree, 4, [payload], "fuzz.wal") == len(payload)
    assert tree.revision == 4
    assert tree.read(json.loads(payload)[1][1]) == json.loads(payload)[1][2]


def test_replay_records_skips_what_the_tree_holds_and_refuses_a_gap():
    def record(n: int) -> bytes:
        return dumps([["a", f"i{n}", None, None], ["s", ["jobs", "a", "n"], n]])

    tree = Tree(_VALID_TREE, revision=3)
    # Revisions 2 and 3 are in the tree already (a snapshot's, say).
    size = replay_records(tree, 2, [record(2), record(3), record(4)], "f")
    assert size == len(record(4))
    assert (tree.revision, tree.read("jobs.a.n")) == (4, 4)
    assert replay_records(tree, 1, [record(1)], "f") == 0  # all behind it
    missing = r"revision 5 is missing \(next found: 6\)"
    with pytest.raises(CorruptStateError, match=missing):
        replay_records(tree, 6, [record(6)], "f")
    assert (tree.revision, tree.read("jobs.a.n")) == (4, 4)


def test_segment_decoder_fuzz():
    rng = random.Random(SEED + 2)
    head = _segment_header(b"\2" * 16, 1)
    valid = head + encode_record(1, dumps(_VALID_OPS), 0)
    counts = {"refused": 0, "read": 0}
    for i, junk in enumerate(inputs(rng, _VALID_OPS, PER_DECODER)):
        if i % 2:  # a valid segment, damaged at a random byte, or cut
            data = bytearray(valid)
            at = rng.randrange(len(data))
            data[at] = rng.randrange(256)
            data = data[: rng.randrange(len(data) + 1)] if i % 3 == 0 else data
        else:  # a valid header, then anything (framed as a record or not)
            data = bytearray(head + (encode_record(1, junk, 0) if i % 4 else junk))
        try:
            segment = read_segment(bytes(data), "fuzz.wal")
            tree = Tree(_VALID_TREE, revision=0)
            for sequence, payload in segment.records:
                apply_record(tree, sequence, payload, "fuzz.wal")
        except CorruptStateError:
            counts["refused"] += 1
            continue
        counts["read"] += 1
    print(f"segment decoder: {PER_DECODER} inputs, {counts}")
    assert sum(counts.values()) == PER_DECODER


def test_checkpoint_manifest_decoder_fuzz(tmp_path):
    rng = random.Random(SEED + 3)
    valid = {
        "format": "stateward-checkpoint/1",
        "revision": 1,
        "created": "x",
        "sequence": 1,
        "objects": ["model"],
        "empty": [],
    }
    counts = {"refused": 0, "read": 0}
    manifest = tmp_path / "MANIFEST.json"
    for data in inputs(rng, valid, PER_DECODER):
        manifest.write_bytes(data)
        try:
            _read_manifest(tmp_path)
        except CheckpointError:
            counts["refused"] += 1
            continue
        counts["read"] += 1
    print(f"checkpoint manifest decoder: {PER_DECODER} inputs, {counts}")
    assert sum(counts.values()) == PER_DECODER


@pytest.mark.parametrize("seed", range(3))
def test_fuzzed_store_files_are_set_aside_or_loaded_whole(tmp_path, seed):
    from stateward import Store

    rng = random.Random(SEED + 10 + seed)
    for i, data in enumerate(inputs(rng, _VALID_TREE, 8)):
        path = tmp_path / f"s{i}.json"
        path.write_bytes(data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with Store(state_file=path, default={"fresh": True}) as store:
                tree = store.get("")
        if caught:  # malformed: set aside, started from the default
            assert "not a valid state file" in str(caught[0].message)
            assert tree == {"fresh": True}
        else:
            assert tree == json.loads(data)
        json.dumps(tree, allow_nan=False)
