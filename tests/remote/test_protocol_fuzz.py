"""Decoder fuzz: random and mutated entries into every decoder of the remote layer.

What another process writes into a stream (a request, an Ack, a delivery, a
reply, a feed entry) must end in the decoder's typed error or in a result
that its reader can use as it is: the types its code relies on, a path that
parses back, a kind that is a ChangeKind. A mutated entry that passes, and
that the reader then trips over (a KeyError, a TypeError), would kill the
task reading the stream: the owner's request loop, a client's reply reader,
a remote subscriber, a watch.
"""

from __future__ import annotations

import json
import random
from typing import Any

import anyio
import pytest
from fuzzlib import inputs

from stateward import (
    AckReport,
    ChangeKind,
    Delete,
    Merge,
    Resync,
    Set,
    StateChanged,
    StatewardError,
    Transaction,
    open_state,
)
from stateward.messages.acks import Ack, ResultCode
from stateward.paths import PatternTrie, format_path, parse_path, parse_pattern
from stateward.remote import connect_redis, protocol, serve_redis
from stateward.remote._deliveries import decode_ack, decode_event, encode_event
from stateward.remote._feed_format import decode_feed, encode_feed, encode_gap
from stateward.remote._redis import open_connection
from stateward.remote._replies import decode_reply, refusal_error as _error
from stateward.remote._watch import feed_events as _feed_events

SEED = 20261207
PER_KIND = 2_000


def _message(fields: dict[bytes, bytes]) -> Any:
    return json.loads(fields[protocol.FIELD])


_EVENT = _message(
    encode_event(
        "sub-1",
        "ep",
        3,
        StateChanged(7, "jobs.a", ChangeKind.UPDATED, 1, 2, "id-7", "w", {"p": 1}),
    )
)
_RESYNC = _message(encode_event("sub-1", "ep", 4, Resync("jobs.*", 2, 8, 9)))
_FEED = _message(
    encode_feed(7, "id-7", None, None, [(("jobs", "a.b"), "created", None, {"n": 1})])
)
_GAP = _message(encode_gap(3, 5, "missing"))
_ACK = {"client": "c", "sub": "s", "seq": 1, "ras": 1, "message": "ok"}
_REPLIES: list[dict[str, Any]] = [
    {
        "id": "a",
        "kind": "applied",
        "revision": 3,
        "changed": True,
        "subscribers": ["s"],
        "derive_errors": [],
    },
    {"id": "a", "kind": "acks", "result": 1, "acks": [["s", 2, "no"]], "missing": []},
    {"id": "g", "kind": "value", "value": {"n": 1}},
    {"id": "s", "kind": "subscribed", "revision": 3, "epoch": "ep", "seq": 0},
    {"id": "s", "kind": "unsubscribed"},
    {
        "id": "a",
        "kind": "rejected",
        "error": "RevisionMismatchError",
        "path": "",
        "reason": "r",
        "expected": 1,
        "actual": 2,
    },
    {
        "id": "a",
        "kind": "refused",
        "error": "CompactedError",
        "requested": 1,
        "oldest": 5,
    },
    {"id": "a", "kind": "refused", "error": "InvalidActionError", "field": "f"},
]
_REQUESTS = [
    {
        "v": 1,
        "op": "send",
        "id": action.id,
        "client": "c",
        "durable": None,
        "action": protocol.encode_action(action),
    }
    for action in (
        Set("jobs.a", {"n": 1}),
        Merge("jobs", {"a": 1, "b.c": [1]}),
        Transaction([Set("a", 1), Delete("b")], if_revision=3),
    )
] + [
    {"v": 1, "op": "get", "id": "g", "client": "c", "path": ["a"], "default": 0},
    {
        "v": 1,
        "op": "subscribe",
        "id": "s",
        "client": "c",
        "subscriber": "s1",
        "pattern": "jobs.**",
        "timeout": 5,
        "from_revision": 2,
    },
]


def _entries(rng: random.Random, valid: Any) -> list[dict[bytes, bytes]]:
    return [{protocol.FIELD: data} for data in inputs(rng, valid, PER_KIND)]


def _strict_json(value: object) -> None:
    json.dumps(value, allow_nan=False)


def _check_event(event: object) -> None:
    """What a remote subscriber's handler (and its bookkeeping) relies on."""
    if isinstance(event, Resync):
        assert type(event.dropped) is int
        assert event.dropped >= 0
        assert type(event.first_revision) is int
        assert 0 <= event.first_revision <= event.last_revision
        parse_pattern(event.pattern)
        return
    assert isinstance(event, StateChanged)
    assert type(event.revision) is int
    assert event.revision >= 0
    assert parse_path(event.path) is not None
    assert isinstance(event.kind, ChangeKind)
    assert type(event.action_id) is str
    assert event.source is None or type(event.source) is str
    for value in (event.old_value, event.new_value, event.payload):
        _strict_json(value)


def test_deliveries_are_refused_or_usable() -> None:
    rng = random.Random(SEED)
    taken = 0
    for valid in (_EVENT, _RESYNC):
        for fields in _entries(rng, valid):
            try:
                sub, epoch, seq, event = decode_event(fields)
            except StatewardError:
                continue
            taken += 1
            protocol.check_name(sub, "sub")
            assert type(epoch) is str
            assert type(seq) is int
            assert seq >= 0
            _check_event(event)
    assert taken > 0  # (the valid ones, at least: mutations keep some)


def test_acks_are_refused_or_usable() -> None:
    rng = random.Random(SEED + 1)
    for fields in _entries(rng, _ACK):
        try:
            _client, sub, seq, ras, text = decode_ack(fields)
        except StatewardError:
            continue
        assert type(seq) is int
        assert type(ras) is int
        assert type(text) is str
        Ack(sub, 1, ras, text)  # as the owner's proxy builds it


def test_feed_entries_are_refused_or_routed() -> None:
    # Through the watch's own reader: every entry ends in events, a Resync
    # or the next revision expected, never in an exception.
    rng = random.Random(SEED + 2)
    trie: PatternTrie[int] = PatternTrie()
    trie.add(parse_pattern("**"), 1)
    routed = 0
    for valid in (_FEED, _GAP):
        for fields in _entries(rng, valid):
            try:
                decoded = decode_feed(fields)
            except StatewardError:
                continue
            first, revision, _, _, _, changes = decoded
            assert type(revision) is int
            assert 0 <= first <= revision
            for segments, kind, _old, _new in changes:
                assert isinstance(kind, ChangeKind)
                assert all(type(seg) is str for seg in segments)
            entries = [(b"1-0", fields)]
            for item in _feed_events(entries, trie, "**", 0):
                routed += 1
                if not isinstance(item, int):
                    _check_feed_event(item)
    assert routed > 0


def _check_feed_event(event: StateChanged | Resync) -> None:
    if isinstance(event, Resync):
        assert 0 <= event.first_revision <= event.last_revision
        return
    assert type(event.revision) is int
    assert isinstance(event.kind, ChangeKind)
    assert type(event.path) is str


def test_replies_are_refused_or_readable() -> None:
    # As the client reads them: a receipt, an acks report, a value, a
    # subscription, or the typed error of a refusal.
    rng = random.Random(SEED + 3)
    for valid in _REPLIES:
        for fields in _entries(rng, valid):
            try:
                reply = decode_reply(fields)
            except StatewardError:
                continue
            kind = reply["kind"]
            if kind == "applied":
                (reply["revision"], reply["changed"])
                tuple(reply["subscribers"]), tuple(reply["derive_errors"])
            elif kind == "acks":
                acks = tuple(Ack(n, 1, int(r), str(m)) for n, r, m in reply["acks"])
                AckReport(ResultCode(reply["result"]), acks, tuple(reply["missing"]))
            elif kind == "value":
                _strict_json(reply["value"])
            elif kind == "subscribed":
                assert type(reply["epoch"]) is str
                assert type(reply["seq"]) is int
            elif kind != "unsubscribed":
                assert isinstance(_error(reply), StatewardError)


def test_requests_are_refused_or_valid_actions() -> None:
    rng = random.Random(SEED + 4)
    for valid in _REQUESTS:
        for fields in _entries(rng, valid):
            try:
                request = protocol.decode_request(fields)
            except StatewardError:
                continue
            if request.action is not None:
                assert protocol.decode_action(protocol.encode_action(request.action))
            if request.op == "get":
                format_path(request.path)


def test_a_watch_routes_a_change_by_its_segments() -> None:
    # A key that no path can name ("a/b": a Merge wrote such keys before it
    # refused them, and old journals still hold them) reached the watch,
    # which parsed the path string back and raised InvalidPathError out of
    # the watch. It is routed by the segments the entry holds.
    trie: PatternTrie[int] = PatternTrie()
    trie.add(parse_pattern("jobs.*"), 1)
    entry = encode_feed(5, "id-5", None, None, [(("jobs", "a/b"), "created", None, 1)])
    items = list(_feed_events([(b"5-0", entry)], trie, "jobs.*", 5))
    assert items == [
        StateChanged(5, "jobs.a/b", ChangeKind.CREATED, None, 1, "id-5"),
        6,
    ]


def test_state_signals_messages_are_refused_or_round_trip() -> None:
    # What unchanged state-signals exporters and responders publish: parsed
    # into a Signal or a Response that encodes back, or the typed error.
    from stateward.signals import protocol as sp

    rng = random.Random(SEED + 5)
    signal = json.loads(sp.Signal("p-1", "proc", "run", "host", 3, "t").to_json())
    response = json.loads(sp.Response("r-1", "p-1", "run", 1, "ok").to_json())
    for valid, parse in ((signal, sp.parse_signal), (response, sp.parse_response)):
        for data in inputs(rng, {**valid, "metadata": {"k": [1]}}, PER_KIND):
            try:
                parsed = parse(data)
            except StatewardError:
                continue
            assert parse(parsed.to_json()) == parsed


def test_what_json_in_utf8_cannot_hold_is_the_typed_error_of_encode() -> None:
    for value in (float("nan"), "x\ud800", object(), {1: 2, "a": float("inf")}):
        try:
            protocol.encode({"v": value})
        except StatewardError:
            continue
        raise AssertionError(value)


@pytest.mark.anyio
async def test_a_running_owner_keeps_serving_through_fuzzed_requests(redis) -> None:
    # The decoders above, end to end: mutated requests of every kind into a
    # served state's stream. Every one is refused, applied or answered; the
    # owner keeps serving, and a client's send after them is applied.
    rng = random.Random(SEED + 6)
    name = "fuzz"
    entries = [data for valid in _REQUESTS for data in inputs(rng, valid, 200)]
    async with (
        open_state({"a": 1}) as state,
        serve_redis(state, redis.url, name=name, writable={"c": [""]}) as server,
    ):
        async with open_connection(redis.url) as raw:
            for data in entries:
                await raw.xadd(f"sw:{{{name}}}:actions", {protocol.FIELD: data})
        async with connect_redis(redis.url, name=name, client="c") as remote:
            with anyio.fail_after(60):
                receipt = await remote.send(Set("after", 1))  # (read after them)
        assert await state.get("after") == 1
        assert receipt.revision == state.revision
        assert server.refused > len(entries) // 2
