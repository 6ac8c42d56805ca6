"""Replies and deliveries too large for one stream entry: typed, never a crash.

A remote read of a large value, a handler answering with a long text, a
change whose values pass the message cap: the owner answers what it can
(a refusal, shortened messages, a Resync) and goes on serving.
"""

from __future__ import annotations

import json

import anyio
import pytest
from hypothesis import given, settings, strategies as st

from stateward import (
    RAS,
    Ack,
    AckReport,
    InvalidActionError,
    ResultCode,
    Resync,
    Set,
    StateChanged,
    open_state,
)
from stateward._json import json_size, surely_larger
from stateward.actors._handler import MAX_ACK_MESSAGE
from stateward.actors.handle import StateHandle
from stateward.remote import _replies, connect_redis, protocol, serve_redis

pytestmark = pytest.mark.anyio

NAME = "big"
CAP = protocol.MAX_MESSAGE_BYTES


def _table(n: int) -> dict[str, object]:
    return {"jobs": {f"k{i}": {"n": i, "tag": "t" * 20} for i in range(n)}}


async def test_a_read_over_the_message_cap_is_refused_and_the_owner_goes_on(
    redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded: list[int] = []
    real = protocol.encode

    def measured(message: dict[str, object]) -> dict[bytes, bytes]:
        try:
            fields = real(message)
        except InvalidActionError:
            encoded.append(CAP + 1)  # encoded whole, then found over the cap
            raise
        encoded.append(len(fields[b"m"]))
        return fields

    monkeypatch.setattr(protocol, "encode", measured)
    let_go: list[object] = []
    real_let_go = StateHandle._let_go

    def letting_go(self: StateHandle, value: object) -> None:
        let_go.append(type(value))
        real_let_go(self, value)  # type: ignore[arg-type]

    monkeypatch.setattr(StateHandle, "_let_go", letting_go)
    tree = _table(100_000)  # about 3.8 MB of JSON
    async with (
        open_state(tree) as state,
        serve_redis(state, redis.url, name=NAME),
        connect_redis(redis.url, name=NAME) as remote,
    ):
        let_go.clear()  # (what serving let go of as it started)
        with anyio.fail_after(30):
            with pytest.raises(InvalidActionError) as caught:
                await remote.get("")
            assert caught.value.field == "path"
            assert "the value at '' is larger than the" in caught.value.reason
            with pytest.raises(InvalidActionError):
                await remote.get("jobs")
            # Known to be over without encoding it whole on the owner's
            # loop: no entry near the value's size was ever made.
            assert max(encoded) < CAP
            # The copies read for the replies go to the state's reaper, to be
            # freed in slices (at once, a large one would stop the loop).
            assert let_go == [dict, dict]
            assert await remote.get("jobs.k7") == {"n": 7, "tag": "t" * 20}
            receipt = await remote.send(Set("jobs.k7.n", -7))
            assert receipt.revision == 1
            assert await remote.get("jobs.k7.n") == -7


async def test_handler_messages_too_long_for_the_acks_are_shortened(redis) -> None:
    async with open_state({"a": 0}) as state, serve_redis(state, redis.url, name=NAME):

        async def loud(event: object) -> tuple[int, str]:
            return RAS.ERROR, "x" * 2_000_000

        async def quiet(event: object) -> int:
            return RAS.SUCCESS

        await state.subscribe("a", loud, name="loud")
        await state.subscribe("a", quiet, name="quiet")
        async with connect_redis(redis.url, name=NAME) as remote:
            with anyio.fail_after(30):
                receipt = await remote.send(Set("a", 1))
                report = await receipt.acks(timeout=10)
                assert report.result == ResultCode.SUB_FAILED
                assert report.missing == ()
                codes = {a.subscriber: (a.ras, a.message) for a in report.acks}
                ras, message = codes["loud"]
                assert ras == RAS.ERROR
                # Cut where the handler answered, as a local Ack is.
                assert message.startswith("x" * 1000)
                assert message.endswith(" ... (cut from 2,000,000 characters)")
                assert len(message) == MAX_ACK_MESSAGE
                assert codes["quiet"] == (RAS.SUCCESS, "")
                assert (await remote.send(Set("b", 2))).revision == 2  # still served


async def test_a_change_too_large_to_deliver_is_a_resync_at_once(redis) -> None:
    heard: list[object] = []

    async def handler(event: object) -> int:
        heard.append(event)
        return RAS.SUCCESS

    async with (
        open_state({"b": ""}) as state,
        serve_redis(state, redis.url, name=NAME),
        connect_redis(redis.url, name=NAME) as remote,
    ):
        with anyio.fail_after(30):
            await remote.subscribe("b", handler, name="watcher")
            await (await state.send(Set("b", "z" * 900_000))).acks(timeout=10)
            # Its old and new values together pass the message cap.
            receipt = await state.send(Set("b", "y" * 900_000))
            report = await receipt.acks(timeout=10)
            assert report.result == ResultCode.ALL_SUBS_SUCCESS  # its answer
            assert len(heard) == 2
            assert heard[1] == Resync("b", 1, 2, 2)  # at once, not later
            await (await state.send(Set("b", "small"))).acks(timeout=10)
    changed = heard[2]
    assert isinstance(changed, StateChanged)
    assert (changed.revision, changed.new_value) == (3, "small")


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5)
    ),
    max_leaves=30,
)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # (no event loop needed)
@settings(max_examples=400, deadline=None)
@given(value=_json, cap=st.integers(0, 300))
def test_over_the_cap_is_never_said_of_a_value_that_fits(
    anyio_backend: str, value: object, cap: int
) -> None:
    # A lower bound: what it refuses is surely larger than the cap.
    size = len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode())
    if surely_larger(value, cap):
        assert size > cap
    assert surely_larger(value, size) is False


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # (no event loop needed)
def test_large_containers_are_walked_in_slices_to_the_same_sizes(
    anyio_backend: str,
) -> None:
    # Containers over a slice (1,024 members) are walked a slice at a time,
    # so that a walk stopped early has not listed the rest: the bound still
    # holds, and json_size's estimate is the same as summed part by part.
    table = {f"k{i}": {"n": i, "tags": ["a"] * 3} for i in range(3_000)}
    listed = list(range(5_000))
    for value in (table, listed, [table, listed]):
        size = len(json.dumps(value, ensure_ascii=False).encode())
        assert surely_larger(value, size) is False
        assert surely_larger(value, size // 4)  # far over: said so
    flat = {f"k{i}": i for i in range(3_000)}
    assert json_size(flat) == 2 + sum(len(key) + 4 + 8 for key in flat)
    assert json_size(listed) == 2 + 5_000 * (1 + 8)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # (no event loop needed)
@pytest.mark.parametrize(
    ("answers", "missing", "shortened"),
    [
        (40, 0, True),  # many long messages: each shortened, all codes cross
        (3_000, 0, False),  # too many even shortened: codes without messages
        (0, 60_000, False),  # only who did not answer, too many: the result
    ],
)
def test_an_acks_report_always_fits_in_one_message(
    anyio_backend: str, answers: int, missing: int, shortened: bool
) -> None:
    text = "é" * 400_000  # (two bytes each in the JSON)
    acks = tuple(Ack(f"s{i}", 1, RAS.ERROR, text) for i in range(answers))
    absent = tuple(f"subscriber-{i:012d}" for i in range(missing))
    report = AckReport(ResultCode.SUB_FAILED, acks, absent)
    fields = _replies.acks_reply("id-1", report)
    assert len(fields[b"m"]) <= CAP
    reply = json.loads(fields[b"m"])
    assert reply["result"] == ResultCode.SUB_FAILED
    if answers and missing == 0:
        assert [a[:2] for a in reply["acks"]] == [[f"s{i}", 2] for i in range(answers)]
        assert all(
            a[2].endswith("(cut from 400,000 characters)") == shortened
            for a in reply["acks"]
        )
