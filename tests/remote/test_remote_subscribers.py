"""Remote subscribers: their Acks reach every sender's receipt as a local one's."""

from __future__ import annotations

import json
from contextlib import aclosing

import anyio
import pytest

from stateward import (
    RAS,
    CompactedError,
    ResultCode,
    Resync,
    Set,
    StateChanged,
    open_state,
)
from stateward.remote import _proxy, connect_redis, serve_redis
from stateward.remote._redis import open_connection
from stateward.remote.client import RemoteState

from .redislib import wait_for

pytestmark = pytest.mark.anyio


def _ack(**fields):
    return {b"m": json.dumps({"message": "", **fields}).encode()}


NAME = "jobs"


async def test_a_remote_subscribers_acks_reach_local_and_remote_senders(redis):
    async with (
        open_state({}) as state,
        serve_redis(state, redis.url, name=NAME),
        connect_redis(redis.url, name=NAME, client="dash") as there,
        connect_redis(redis.url, name=NAME, client="worker") as worker,
    ):
        seen: list[tuple[int, str]] = []

        async def dashboard(event):
            assert isinstance(event, StateChanged)
            seen.append((event.revision, event.path))
            if event.new_value == "broken":
                return RAS.ERROR, "cannot show it"
            return RAS.SUCCESS

        sub = await there.subscribe("job", dashboard, name="dashboard")
        await state.subscribe("job", lambda e: None, name="local")
        with anyio.fail_after(30):
            local = await (await state.send(Set("job.phase", "build"))).acks(10)
            assert local.result == ResultCode.ALL_SUBS_SUCCESS
            assert sorted(a.subscriber for a in local.acks) == ["dashboard", "local"]
            remote = await (await worker.send(Set("job.phase", "broken"))).acks(10)
            assert remote.result == ResultCode.SUB_FAILED
            failed = [a for a in remote.acks if a.subscriber == "dashboard"]
            assert failed[0].message == "cannot show it"
            await worker.send(Set("other", 1))  # not its pattern
        assert seen == [(1, "job.phase"), (2, "job.phase")]  # in revision order
        assert sub.handled == 2
        await sub.unsubscribe()
        with anyio.fail_after(30):
            after = await state.send(Set("job.phase", "done"))
        assert after.subscribers == ("local",)


async def test_a_remote_handlers_long_or_odd_answer_is_an_ack_not_a_dead_client(
    redis,
):
    # A 10 MB message was over the remote layer's message cap: encoding the
    # Ack raised in the subscription's task and stopped the whole client.
    # A code over 32 bits was refused by the owner, the subscriber missing.
    async with (
        open_state({}) as state,
        serve_redis(state, redis.url, name=NAME),
        connect_redis(redis.url, name=NAME, client="dash") as there,
    ):

        async def long(event):
            return RAS.FAILURE, "m" * 10_000_000

        async def long_error(event):
            raise ValueError("e" * 10_000_000)

        async def wide(event):
            return 2**40

        for handler in (long, long_error, wide):
            await there.subscribe("job", handler, name=handler.__name__)
        with anyio.fail_after(30):
            report = await (await state.send(Set("job", 1))).acks(10)
            assert report.missing == ()
            got = {a.subscriber: (a.ras, a.message) for a in report.acks}
            assert got["long"][0] == RAS.FAILURE
            assert got["long"][1].endswith("(cut from 10,000,000 characters)")
            assert got["long_error"][0] == RAS.ERROR
            assert got["long_error"][1].startswith("ValueError: eee")
            assert got["wide"][0] == RAS.INVALID
            assert (await there.send(Set("after", 1))).revision == 2  # client alive
            assert await there.get("after") == 1


async def test_a_served_state_leaves_no_stand_in_and_its_subscribers_come_back(
    redis,
):
    # Once serve_redis ended, its proxies stayed subscribed to the state:
    # with nobody to relay to, the mailbox filled and every write then
    # waited block_timeout (1 s), and the name kept the remote subscriber
    # from coming back when the state was served again. Coming back, it
    # silently missed what changed while the state was not served.
    seen: list[object] = []
    async with (
        open_state({}) as state,
        connect_redis(redis.url, name=NAME, client="dash") as there,
    ):
        async with serve_redis(state, redis.url, name=NAME):
            await there.subscribe("job", seen.append, name="dashboard", refresh=0.1)
            with anyio.fail_after(30):
                await (await state.send(Set("job", 1))).acks(10)
            assert "dashboard" in state.subscriber_statistics()
        assert "dashboard" not in state.subscriber_statistics()
        with anyio.fail_after(30):
            for n in range(2, 402):  # more than the stand-in's mailbox holds
                await state.send(Set("job", n))
        async with serve_redis(state, redis.url, name=NAME):
            await wait_for(lambda: "dashboard" in state.subscriber_statistics())
            with anyio.fail_after(30):
                report = await (await state.send(Set("job", "back"))).acks(10)
            assert report.result == ResultCode.ALL_SUBS_SUCCESS
            await wait_for(lambda: len(seen) == 3)
    first, gap, back = seen
    assert isinstance(first, StateChanged)
    assert first.revision == 1
    assert isinstance(gap, Resync)
    assert gap.first_revision == 2
    assert gap.pattern == "job"
    assert isinstance(back, StateChanged)
    assert back.new_value == "back"
    assert gap.last_revision == back.revision - 1


@pytest.mark.parametrize("exc", [GeneratorExit, BaseException])
async def test_a_remote_handlers_base_exception_is_a_failed_ack(redis, exc):
    # It went past the remote handler's "except Exception" and ended the
    # subscription: every later event was missing.
    async with (
        open_state({}) as state,
        serve_redis(state, redis.url, name=NAME),
        connect_redis(redis.url, name=NAME, client="dash") as there,
    ):

        async def handler(event):
            if event.new_value == 1:
                raise exc("no")
            return RAS.SUCCESS

        await there.subscribe("job", handler, name="dashboard")
        with anyio.fail_after(30):
            failed = await (await state.send(Set("job", 1))).acks(10)
            assert [a.ras for a in failed.acks] == [RAS.ERROR]
            assert failed.acks[0].message.startswith(exc.__name__)
            fine = await (await state.send(Set("job", 2))).acks(10)
            assert fine.result == ResultCode.ALL_SUBS_SUCCESS


async def test_a_closing_client_takes_its_subscribers_with_it(redis):
    # They stayed at the owner until three events in a row went unanswered
    # (15 s): meanwhile the stand-in's mailbox filled and a write waited a
    # second for room.
    async with open_state({}) as state, serve_redis(state, redis.url, name=NAME):
        async with connect_redis(redis.url, name=NAME, client="dash") as there:
            await there.subscribe("job", lambda e: None, name="dashboard")
            await there.subscribe("other", lambda e: None, name="idle")
            assert {"dashboard", "idle"} <= set(state.subscriber_statistics())
        await wait_for(lambda: not state.subscriber_statistics())
        with anyio.fail_after(30):
            receipt = await state.send(Set("job", 1))
        assert receipt.subscribers == ()


async def test_a_dead_clients_idle_subscriber_is_dropped_a_live_ones_kept(
    redis, monkeypatch
):
    # One that saw no change was never missed three times: it stayed at the
    # owner, routed to and listed, for as long as the owner served.
    async def killed(self):  # a killed client never says goodbye
        pass

    monkeypatch.setattr(RemoteState, "_leave", killed)
    monkeypatch.setattr(_proxy, "IDLE_FLOOR", 1.0)
    async with (
        open_state({}) as state,
        serve_redis(state, redis.url, name=NAME),
        connect_redis(redis.url, name=NAME, client="live") as live,
    ):
        await live.subscribe("quiet.live", lambda e: None, name="kept", refresh=0.05)
        async with connect_redis(redis.url, name=NAME, client="dead") as dead:
            await dead.subscribe("quiet.dead", lambda e: None, name="gone")
        await wait_for(lambda: "gone" not in state.subscriber_statistics())
        with anyio.fail_after(30):
            await (await state.send(Set("other", 1))).acks(10)  # (a turn or two)
        assert "kept" in state.subscriber_statistics()


async def test_a_gone_remote_subscriber_is_missing_then_dropped(redis, monkeypatch):
    async def killed(self):  # a killed client never says goodbye
        pass

    monkeypatch.setattr(RemoteState, "_leave", killed)
    async with (
        open_state({}) as state,
        serve_redis(state, redis.url, name=NAME) as server,
    ):
        async with connect_redis(redis.url, name=NAME) as there:
            await there.subscribe("", lambda e: RAS.SUCCESS, name="gone", timeout=0.2)
        # its process is gone: nobody reads its deliveries
        with anyio.fail_after(30):
            reports = [await (await state.send(Set("n", i))).acks(10) for i in range(3)]
            assert all(r.result == ResultCode.MISSING_RESPONSE for r in reports)
            assert all(r.missing == ("gone",) for r in reports)
            # dropped after 3 misses
            await wait_for(lambda: "gone" not in state.subscriber_statistics())
            assert (await state.send(Set("n", 9))).subscribers == ()
        assert server.forged_acks == 0


async def test_forged_acks_are_refused(redis):
    async with (
        open_state({}) as state,
        serve_redis(state, redis.url, name=NAME) as server,
        connect_redis(redis.url, name=NAME, client="real") as there,
    ):
        gate = anyio.Event()

        async def slow(event):
            await gate.wait()
            return RAS.SUCCESS

        await there.subscribe("", slow, name="slow", timeout=10)
        with anyio.fail_after(30):
            receipt = await state.send(Set("a", 1))
            async with open_connection(redis.url) as raw:
                ack = {"client": "real", "sub": "slow", "seq": 1, "ras": 1}
                for fields in (
                    _ack(**{**ack, "client": "evil"}),  # another client
                    _ack(**{**ack, "seq": 99}),  # an event never sent
                    _ack(**{**ack, "ras": 99999999999}),  # not a RAS code
                    {b"m": b"not json"},
                ):
                    await raw.xadd(f"sw:{{{NAME}}}:acks", fields)
                await wait_for(lambda: server.forged_acks >= 4)
            gate.set()
            report = await receipt.acks(10)
        assert report.result == ResultCode.ALL_SUBS_SUCCESS  # the real answer only
        print(f"forged acks: {server.forged_acks} refused")


async def test_a_remote_watch_resumes_without_gap_or_duplicate(redis):
    async with (
        open_state({}, history=5) as state,
        serve_redis(state, redis.url, name=NAME),
        connect_redis(redis.url, name=NAME) as there,
    ):
        for i in range(1, 4):
            await state.send(Set("job.n", i))  # revisions 1..3
        seen = []
        with anyio.fail_after(30):
            async with aclosing(there.watch("job", name="w", from_revision=1)) as feed:
                async for event in feed:
                    seen.append((event.revision, event.new_value))
                    if event.revision == 3:
                        await state.send(Set("job.n", 4))  # live, after the replay
                    if event.revision == 4:
                        break
        assert seen == [(2, 2), (3, 3), (4, 4)]
        with anyio.fail_after(30):
            while "w" in state.subscriber_statistics():  # noqa: ASYNC110 - its unsubscribe
                await anyio.sleep(0.01)
        for i in range(5, 12):
            await state.send(Set("job.n", i))  # the history keeps the last 5 only
        with pytest.raises(CompactedError):
            await there.subscribe("job", lambda e: None, name="late", from_revision=1)


async def test_an_event_sent_while_redis_is_away_is_delivered_once_it_is_back(redis):
    with anyio.fail_after(60):
        async with (
            open_state({}) as state,
            serve_redis(state, redis.url, name=NAME) as server,
            connect_redis(redis.url, name=NAME, client="dash") as there,
        ):
            seen = []
            await there.subscribe("a", seen.append, name="dash", timeout=20)
            report = await (await state.send(Set("a", 1))).acks(10)
            assert report.ok
            redis.kill()
            receipt = await state.send(Set("a", 2))  # the proxy cannot deliver it yet
            await wait_for(lambda: server.reconnects >= 1)  # the owner saw it go
            await anyio.to_thread.run_sync(redis.start)
            report = await receipt.acks(20)
            assert report.result is ResultCode.ALL_SUBS_SUCCESS, report
            assert [e.new_value for e in seen] == [1, 2]  # each handled once
            assert server.reconnects >= 1


async def test_resyncs_name_only_what_was_not_seen_and_a_gap_joins_the_next(redis):
    # A Resync the owner sent (a change too large to cross) counts as seen:
    # a later gap starts after it. A gap just before such a Resync is said
    # in that Resync, not in one of its own.
    seen: list[object] = []
    big = "z" * 900_000  # a change from one of these to another cannot cross
    async with (
        open_state({"b": ""}) as state,
        serve_redis(state, redis.url, name=NAME) as server,
        connect_redis(redis.url, name=NAME) as there,
    ):
        with anyio.fail_after(30):
            await there.subscribe("b", seen.append, name="dash", timeout=0.5)
            proxy = server._proxies.by_name["dash"]
            encode = proxy._encode

            def lose_one(seq: int, event: object) -> object:
                # Of another proxy, as far as the client knows: never handled.
                proxy._encode, epoch, proxy.epoch = encode, proxy.epoch, "gone"
                try:
                    return encode(seq, event)
                finally:
                    proxy.epoch = epoch

            async def change(value: str, *, lost: bool = False) -> None:
                if lost:
                    proxy._encode = lose_one
                await (await state.send(Set("b", value))).acks(timeout=10)

            await change(big)  # 1: handled
            await change(big.replace("z", "y"))  # 2: too large, a Resync
            await change("c", lost=True)  # 3: lost on the way
            await change("d")  # 4: the gap (3 alone), then handled
            await change(big, lost=True)  # 5: lost on the way
            await change(big.replace("z", "y"))  # 6: too large, after a gap
    resyncs = [
        (e.dropped, e.first_revision, e.last_revision)
        for e in seen
        if isinstance(e, Resync)
    ]
    changes = [e.revision for e in seen if isinstance(e, StateChanged)]
    assert resyncs == [(1, 2, 2), (1, 3, 3), (2, 5, 6)]
    assert changes == [1, 4]


async def test_a_lost_delivery_is_a_resync_for_the_remote_handler(redis):
    # Events lost on the way (a seq skipped) reach the handler as a Resync,
    # never as a silent gap.
    with anyio.fail_after(30):
        async with (
            open_state({}) as state,
            serve_redis(state, redis.url, name=NAME) as server,
            connect_redis(redis.url, name=NAME, client="dash") as there,
        ):
            seen = []
            sub = await there.subscribe("a", seen.append, name="dash")
            assert (await (await state.send(Set("a", 1))).acks(10)).ok
            proxy = server._proxies.by_name["dash"]
            proxy.seq += 2  # as if two deliveries were lost with Redis
            assert (await (await state.send(Set("a", 2))).acks(10)).ok
            kinds = [type(e).__name__ for e in seen]
            assert kinds == ["StateChanged", "Resync", "StateChanged"]
            assert seen[1].dropped == 2
            await sub.unsubscribe()
