"""Inputs and handlers that once could kill, freeze or silently change a state."""

from __future__ import annotations

import asyncio
import re
import threading

import anyio
import pytest

from stateward import (
    RAS,
    AckDeadlockError,
    ActionRejectedError,
    InvalidActionError,
    InvalidPathError,
    InvalidValueError,
    Set,
    StateBrokenError,
    Transaction,
    limits,
    open_state,
    set_limits,
)
from stateward.actors._handler import MAX_ACK_MESSAGE

pytestmark = pytest.mark.anyio


async def test_10_alternating_globstar_pattern_routes_a_deep_write():
    """'**.*.**.*...' patterns once froze the loop for minutes on one write."""
    async with open_state({}) as state:
        seen = []
        await state.subscribe(".".join(["**", "*"] * 16), seen.append, name="s")
        deep = ".".join(f"k{i}" for i in range(60))
        with anyio.fail_after(10):
            receipt = await state.send(Set(deep, 1))
            report = await receipt.acks(timeout=5)
        assert report.ok
        assert [e.path for e in seen] == [deep]


def test_10_deeply_nested_transaction_is_refused_at_the_sender():
    action = Set("a", 1)
    depth = limits().max_transaction_depth
    for _ in range(depth):
        action = Transaction([action])
    with pytest.raises(InvalidActionError, match=r"nested deeper than 16 levels"):
        Transaction([action])


def test_10_huge_transaction_is_refused_at_the_sender():
    limit = limits().max_transaction_actions
    sets = [Set(f"k.{i}", i) for i in range(limit + 1)]
    with pytest.raises(InvalidActionError, match=r"at most 10000 actions"):
        Transaction(sets)
    # nested ones count one by one
    half = Transaction(sets[: limit // 2 + 1])
    with pytest.raises(InvalidActionError, match=r"nested ones included"):
        Transaction([half, half])
    Transaction(sets[:limit])  # at the limit: accepted


def test_10_oversized_values_are_refused_at_the_sender():
    big = limits().max_action_bytes
    with pytest.raises(InvalidValueError, match=r"larger than the size limit"):
        Set("a", "x" * big)
    with pytest.raises(InvalidValueError, match=r"larger than the size limit"):
        Set("a", list(range(big // 8)))
    with pytest.raises(InvalidValueError, match=r"at payload.*size limit"):
        Set("a", 1, payload={"k": "x" * big})
    parts = [Set(f"k{i}", "x" * (big // 4)) for i in range(5)]
    with pytest.raises(InvalidActionError, match=r"add up to more than"):
        Transaction(parts)
    # A source is in every event and journal record of its action: bounded
    # as the values are (it was not counted at all).
    with pytest.raises(InvalidActionError, match=r"source.*max_action_bytes"):
        Set("a", 1, source="s" * (big + 1))
    parts = [Set(f"k{i}", 1, source="s" * (big // 4)) for i in range(5)]
    with pytest.raises(InvalidActionError, match=r"add up to more than"):
        Transaction(parts)


def test_10_limits_are_configurable_and_checked():
    previous = set_limits(max_action_bytes=1000, max_transaction_actions=3)
    try:
        assert limits().max_action_bytes == 1000
        with pytest.raises(InvalidValueError):
            Set("a", "x" * 1000)
        with pytest.raises(InvalidActionError):
            Transaction([Set("a", 1)] * 4)
        with pytest.raises(InvalidActionError, match=r"max_transaction_depth"):
            set_limits(max_transaction_depth=65)
        with pytest.raises(InvalidActionError, match=r"max_action_bytes"):
            set_limits(max_action_bytes="big")  # type: ignore[arg-type]
    finally:
        set_limits(
            max_action_bytes=previous.max_action_bytes,
            max_transaction_actions=previous.max_transaction_actions,
        )
    assert limits() == previous


class _Raise:
    def __init__(self, exc):
        self.exc = exc

    async def __call__(self, event):
        raise self.exc


@pytest.mark.parametrize(
    "exc",
    [asyncio.CancelledError(), GeneratorExit(), BaseException("odd")],
    ids=["asyncio-CancelledError", "GeneratorExit", "BaseException"],
)
async def test_10_a_handlers_base_exception_is_a_failed_ack(exc):
    async with open_state({}) as state:
        calls = []

        async def handler(event):
            calls.append(event.revision)
            if len(calls) == 1:
                raise exc
            return RAS.SUCCESS

        await state.subscribe("a", handler, name="h")
        with anyio.fail_after(5):
            first = await (await state.send(Set("a", 1))).acks()
            second = await (await state.send(Set("a", 2))).acks()
        assert first.acks[0].ras == RAS.ERROR
        assert type(exc).__name__ in first.acks[0].message
        assert second.ok  # the subscriber keeps running
        assert await state.get("a") == 2


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_10_ctrl_c_in_a_handler_stops_the_state_in_order(tmp_path, backend, exc_type):
    """The exception leaves open_state as itself; senders are told; files close."""
    refused = []

    async def main():
        with anyio.fail_after(10):
            async with open_state({}, state_dir=tmp_path) as state:
                await state.send(Set("kept", 1), durable=True)

                async def handler(event):
                    raise exc_type()

                async def sender():
                    try:
                        while True:
                            await state.send(Set("more", 1, eq=False))
                    except StateBrokenError as exc:
                        refused.append(exc)

                await state.subscribe("boom", handler, name="h")
                async with anyio.create_task_group() as tg:
                    tg.start_soon(sender)
                    await state.send(Set("boom", 1))
                    await anyio.sleep_forever()

    with pytest.raises(exc_type):
        anyio.run(main, backend=backend)
    assert refused  # the senders were told, with a typed error
    assert "a handler raised" in str(refused[0])
    # The event loop ended in order: no worker thread of it is left behind
    # (one would keep the interpreter from exiting).
    for thread in threading.enumerate():
        if thread.name == "AnyIO worker thread":
            thread.join(timeout=5)
            assert not thread.is_alive()

    async def reopen():
        with anyio.fail_after(10):
            async with open_state({}, state_dir=tmp_path) as again:
                return await again.get("kept")

    assert anyio.run(reopen, backend=backend) == 1


async def test_10_eq_gets_copies_and_cannot_change_the_tree():
    async with open_state({"a": {"list": [1, 2]}}) as state:
        kept = []

        def eq(old, new):
            kept.append(old)
            old["list"].append("sneaky")
            new["list"].append("sneaky")
            return False

        receipt = await state.send(Set("a", {"list": [1, 2]}, eq=eq))
        assert receipt.changed
        kept[0]["list"].append("later")
        assert await state.get("a") == {"list": [1, 2]}


async def test_10_a_handler_awaiting_its_own_acks_gets_a_typed_error():
    async with open_state({}) as state:
        outcome = []

        async def handler(event):
            if event.path == "a":
                receipt = await state.send(Set("b", 1))  # routed to us too
                try:
                    await receipt.acks()
                except AckDeadlockError as exc:
                    outcome.append(exc)
            return RAS.SUCCESS

        await state.subscribe("", handler, name="me")
        with anyio.fail_after(5):
            report = await (await state.send(Set("a", 1))).acks()
        assert report.ok
        assert len(outcome) == 1
        assert re.match(r"the handler of subscriber 'me' awaited", str(outcome[0]))


async def test_10_a_handler_may_await_acks_of_other_subscribers():
    async with open_state({}) as state:
        reports = []

        async def waiter(event):
            receipt = await state.send(Set("other", event.new_value))
            reports.append(await receipt.acks(timeout=5))

        await state.subscribe("a", waiter, name="waiter")
        await state.subscribe("other", lambda e: None, name="other")
        with anyio.fail_after(5):
            await (await state.send(Set("a", 1))).acks()
        assert reports[0].ok
        assert [a.subscriber for a in reports[0].acks] == ["other"]


def test_10_number_subclasses_are_converted_without_their_own_methods():
    class Odd(int):
        def __int__(self):
            raise RuntimeError("never called")

        def __index__(self):
            raise RuntimeError("never called")

    class Weird(float):
        def __float__(self):
            raise RuntimeError("never called")

    assert Set("a", Odd(3)).value == 3
    assert type(Set("a", Odd(3)).value) is int
    assert Set("a", {"x": Weird(1.5)}).value == {"x": 1.5}


@pytest.mark.parametrize("field", ["id", "source"])
async def test_a_lone_surrogate_in_an_actions_text_is_refused_at_the_sender(
    tmp_path, field
):
    # A lone surrogate is no UTF-8: a persisted state could not write the
    # record of such an action, and its actor crashed (StateBrokenError) on
    # the first one. The value and payload were checked; id and source were
    # not.
    with pytest.raises(InvalidActionError, match="lone surrogate"):
        Set("a", 1, **{field: "x\ud800"})
    async with open_state({}, state_dir=tmp_path) as state:
        assert (await state.send(Set("a", 1, **{field: "x\U0001f600"}))).revision == 1
    async with open_state({}, state_dir=tmp_path) as state:
        assert await state.get("a") == 1


async def test_a_handlers_message_that_is_no_utf8_is_made_text():
    # A report's messages cross to other processes as JSON (a remote
    # sender's acks): one no encoder takes stopped whoever sent the report.
    async with open_state({}) as state:

        async def handler(event):
            return RAS.ERROR, "bad \udc80 byte"

        async def raising(event):
            raise ValueError("bad \ud800")

        await state.subscribe("a", handler, name="h")
        await state.subscribe("a", raising, name="r")
        with anyio.fail_after(5):
            report = await (await state.send(Set("a", 1))).acks()
        messages = {ack.subscriber: ack.message for ack in report.acks}
        assert messages == {"h": "bad ? byte", "r": "ValueError: bad ?"}


async def test_a_subscriber_name_with_a_lone_surrogate_is_refused():
    # The name is in every report, which a served state sends as JSON.
    async with open_state({}) as state:
        with pytest.raises(InvalidActionError, match="lone surrogate"):
            await state.subscribe("a", lambda event: None, name="x\ud800")
        await state.subscribe("a", lambda event: None, name="x\U0001f600")


class _Unprintable:
    def __repr__(self):
        raise RuntimeError("repr")

    __str__ = __repr__


class _UnprintableError(Exception):
    def __str__(self):
        raise RuntimeError("str")


class _Weird(int):
    def __eq__(self, other):
        raise RuntimeError("eq")

    __hash__ = int.__hash__

    def __int__(self):
        raise RuntimeError("int")


@pytest.mark.parametrize("handler_timeout", [None, 30.0])
async def test_whatever_a_handler_returns_or_raises_its_subscriber_answers(
    handler_timeout,
):
    # Each of these once raised in the subscriber's task, outside the
    # handler's own try: the exception left the task group and killed the
    # state (every later send got StateClosedError).
    results = {
        "unprintable": _Unprintable(),
        "unprintable-message": (RAS.FAILURE, _Unprintable()),
        "weird-int": _Weird(0),
        "weird-code": (_Weird(0), "m"),
        "over-32-bits": 2**31,
        "no-answer-code": 1 << 70,  # (once read as "did not answer")
        "long": (RAS.FAILURE, "m" * 10_000_000),
    }
    expected = {
        "unprintable": (RAS.INVALID, "handler returned <_Unprintable instance at "),
        "unprintable-message": (RAS.INVALID, "handler returned (<RAS.FAILURE: 0>, "),
        "weird-int": (0, ""),
        "weird-code": (0, "m"),
        "over-32-bits": (RAS.INVALID, "handler returned 2147483648; expected a RAS"),
        "no-answer-code": (RAS.INVALID, "handler returned 1180591620717411303424;"),
        "long": (RAS.FAILURE, "m" * 1000),
        "unprintable-error": (RAS.ERROR, "_UnprintableError: (its message could not"),
        "long-error": (RAS.ERROR, "ValueError: " + "e" * 1000),
    }

    def answer(name):
        def handler(event):
            if name == "unprintable-error":
                raise _UnprintableError
            if name == "long-error":
                raise ValueError("e" * 10_000_000)
            return results[name]

        return handler

    async with open_state({}) as state:
        for name in expected:
            await state.subscribe(
                "a", answer(name), name=name, handler_timeout=handler_timeout
            )
        with anyio.fail_after(10):
            report = await (await state.send(Set("a", 1))).acks()
            assert report.missing == ()
            got = {ack.subscriber: (ack.ras, ack.message) for ack in report.acks}
            assert got.keys() == expected.keys()
            for name, (ras, start) in expected.items():
                assert got[name][0] == ras, name
                assert got[name][1].startswith(start), (name, got[name][1][:80])
                assert len(got[name][1]) <= MAX_ACK_MESSAGE
            assert got["long"][1].endswith(" ... (cut from 10,000,000 characters)")
            assert (await state.send(Set("a", 2))).revision == 2  # still alive


class _ItsOwnStrRaises(Exception):
    def __str__(self):
        raise RuntimeError("str")


@pytest.mark.parametrize(
    "exc", [GeneratorExit(), BaseException("bare"), _ItsOwnStrRaises()]
)
async def test_an_eq_derivation_or_reaction_raising_anything_is_reported(exc):
    # Each of these ran in the state actor (eq, a derivation) or in the
    # state's task group (a reaction) under "except Exception": a
    # GeneratorExit or a bare BaseException killed the state, and so did an
    # exception whose own __str__ raises, as its report was written.
    def fail(*args):
        raise exc

    name = type(exc).__name__
    async with open_state({"src": 1}) as state:
        with anyio.fail_after(10):
            with pytest.raises(ActionRejectedError, match=f"eq callable raised {name}"):
                await state.send(Set("src", 1, eq=fail))
            with pytest.raises(ActionRejectedError, match=f"derivation raised {name}"):
                await state.derive("never", "src", fail)

            def halve(value):
                if value == 3:
                    raise exc
                return value / 2

            await state.derive("half", "src", halve)
            receipt = await state.send(Set("src", 3))
            assert len(receipt.derive_errors) == 1
            assert receipt.derive_errors[0].startswith(f"half: {name}")
            assert await state.get("half") == 0.5  # the previous value stays

            def react(reader):
                if reader.get("src") == 4:
                    raise exc

            reaction = await state.track(react)
            await state.send(Set("src", 4))
            await reaction.wait_idle()
            await state.send(Set("src", 5))
            await reaction.wait_idle()
            assert reaction.errors == 1
            assert reaction.runs == 3
            await reaction.untrack()
            last = await state.send(Set("src", 6))
            assert last.changed  # alive


@pytest.mark.parametrize("persisted", [False, True])
async def test_a_derived_value_over_the_action_size_limit_is_refused(
    tmp_path, persisted
):
    # A derivation's value was not held to max_action_bytes: one that grew
    # past it was written and journaled, and one too large at the start
    # crashed the state actor (its Set was built outside the try).
    state_dir = tmp_path if persisted else None
    big = limits().max_action_bytes

    def grow(n):
        return "x" * n

    async with open_state({"n": 10}, state_dir=state_dir) as state:
        with anyio.fail_after(10):
            with pytest.raises(ActionRejectedError, match="size limit"):
                await state.derive("never", "n", lambda n: "x" * big)
            await state.derive("text", "n", grow)
            receipt = await state.send(Set("n", big))
            assert len(receipt.derive_errors) == 1
            assert "size limit" in receipt.derive_errors[0]
            assert await state.get("text") == "x" * 10
            assert (await state.send(Set("n", 20))).derive_errors == ()
            assert await state.get("text") == "x" * 20
    if persisted:
        async with open_state({}, state_dir=tmp_path) as state:
            assert await state.get("text") == "x" * 20
            assert await state.get("n") == 20


class _NoRepr:
    def __repr__(self):
        raise RuntimeError("repr")

    def __hash__(self):
        return 1


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: Set("a", _NoRepr()), InvalidValueError),
        (lambda: Set("a", {_NoRepr(): 1}), InvalidValueError),
        (lambda: Set(("a", _NoRepr()), 1), InvalidPathError),
        (lambda: Set(_NoRepr(), 1), InvalidPathError),
    ],
)
def test_an_object_whose_repr_raises_is_still_a_typed_error(build, error):
    # The error's message quoted the object with repr(): the caller got the
    # object's own RuntimeError instead of the typed error.
    with pytest.raises(error, match="whose repr raised"):
        build()


@pytest.mark.parametrize(
    "misuse",
    [
        lambda state: state.send(_NoRepr()),
        lambda state: state.subscribe("", _NoRepr()),
        lambda state: state.subscribe("", print, mailbox_size=_NoRepr()),
        lambda state: state.subscribe("", print, overflow=_NoRepr()),
        lambda state: state.subscribe("", print, block_timeout=_NoRepr()),
        lambda state: state.subscribe("", print, name=_NoRepr()),
        lambda state: state.at_revision(_NoRepr()),
    ],
)
async def test_an_argument_whose_repr_raises_is_still_an_invalid_action(misuse):
    # The argument checks quoted the bad argument with repr() as well.
    async with open_state({}) as state:
        with pytest.raises(InvalidActionError, match="whose repr raised"):
            await misuse(state)
