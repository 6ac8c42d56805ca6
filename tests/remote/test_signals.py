"""state-signals: the native API and the bridge, in this process, on both backends."""

from __future__ import annotations

import json

import anyio
import pytest

from stateward import RAS, InvalidActionError, ResultCode, Set, open_state
from stateward.remote import serve_redis
from stateward.remote._redis import open_connection
from stateward.signals import Signals, open_exporter, open_responder, protocol as sp

from .redislib import wait_for

pytestmark = pytest.mark.anyio

NAME = "jobs"


async def _respond_until_shutdown(url, name, answer, ready, seen=None):
    """A native responder: *answer(signal)* gives (ras, message) or None (silent)."""
    async with open_responder(url, name) as responder:
        ready.set()
        async for signal in responder.listen():
            if seen is not None:
                seen.append(signal)
            if signal.event == sp.INITIALIZATION:
                await responder.srespond(signal)
            elif signal.event == sp.SHUTDOWN:
                return responder
            else:
                got = answer(signal)
                if got is not None:
                    await responder.srespond(signal, *got)
    return None


async def test_native_exporter_and_responders_round_trip(redis):
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            ready = [anyio.Event(), anyio.Event()]

            def good(signal):
                return (1, None)

            def picky(signal):
                if signal.event == "bad":
                    return (0, "not today")
                if signal.event == "slow":
                    return None
                return (1, "fine")

            tg.start_soon(_respond_until_shutdown, redis.url, "good", good, ready[0])
            tg.start_soon(_respond_until_shutdown, redis.url, "picky", picky, ready[1])
            for event in ready:
                await event.wait()
            async with open_exporter(redis.url, "bench") as exporter:
                legal = ["ok", "bad", "slow"]
                assert await exporter.initialize_and_wait(2, legal, timeout=10) == 0
                assert len(exporter.subs) == 2
                code, messages = await exporter.publish_signal("ok", sample=3)
                assert code is ResultCode.ALL_SUBS_SUCCESS
                assert list(messages.values()) == ["fine"]
                code, messages = await exporter.publish_signal("bad")
                assert code is ResultCode.SUB_FAILED
                assert "not today" in messages.values()
                code, _ = await exporter.publish_signal("slow", timeout=0.3)
                assert code is ResultCode.MISSING_RESPONSE
                with pytest.raises(ValueError, match="legal events"):
                    await exporter.publish_signal("nope")
                with pytest.raises(ValueError, match="reserved"):
                    await exporter.publish_signal("shutdown")
                await exporter.shutdown()


async def test_an_exporter_meets_stateward_subscribers_through_the_bridge(redis):
    release = anyio.Event()  # the "slow" answer waits for the exporter's timeout

    async def checker(event):
        if event.new_value["event"] == "fail":
            return RAS.FAILURE, "disk full"
        if event.new_value["event"] == "slow":
            await release.wait()
        return RAS.SUCCESS

    seen = []
    with anyio.fail_after(20):
        async with (
            open_state({}) as state,
            serve_redis(
                state,
                redis.url,
                name=NAME,
                signals=Signals(respond_as=("checker", "recorder"), ack_timeout=5),
            ) as server,
        ):
            await state.subscribe("signals.**", checker, name="checker")
            await state.subscribe("signals.**", seen.append, name="recorder")
            bridge = server.signals
            async with open_exporter(redis.url, "fio") as exporter:
                legal = ["start", "fail", "slow"]
                assert await exporter.initialize_and_wait(2, legal, timeout=10) == 0
                assert exporter.subs == set(bridge.responder_ids.values())
                assert all("checker" in r or "recorder" in r for r in exporter.subs)
                result = await exporter.publish_signal(
                    "start", sample=1, metadata={"a": 1}
                )
                assert result == (ResultCode.ALL_SUBS_SUCCESS, {})
                code, messages = await exporter.publish_signal("fail", sample=2)
                assert code is ResultCode.SUB_FAILED
                assert messages == {bridge.responder_ids["checker"]: "disk full"}
                code, _ = await exporter.publish_signal("slow", timeout=0.2)
                assert code is ResultCode.MISSING_RESPONSE
                release.set()
                await exporter.shutdown()
                await wait_for(lambda: exporter.pub_id not in bridge.exporters)
            value = await state.get("signals.fio")
            assert value["event"] == "shutdown"
            assert value["publisher_id"] == exporter.pub_id
            events = [e.new_value["event"] for e in seen]
            assert events == ["initialization", "start", "fail", "slow", "shutdown"]
            revisions = [e.revision for e in seen]
            assert revisions == sorted(revisions)
            assert seen[1].new_value["metadata"] == {"a": 1}
            assert seen[1].new_value["sample_no"] == 1
            assert {e.source for e in seen} == {exporter.pub_id}


async def test_responders_acknowledge_stateward_actions_through_the_bridge(redis):
    config = Signals(
        export="jobs.**", response_timeout=0.5, max_misses=2, reinitialize=0.2
    )
    seen = []
    with anyio.fail_after(10):
        async with (
            anyio.create_task_group() as tg,
            open_state({}) as state,
            serve_redis(state, redis.url, name=NAME, signals=config) as server,
        ):
            bridge = server.signals
            ready = anyio.Event()

            def answer(signal):
                if signal.event == "broken":
                    return (0, "cannot build")
                if signal.event == "ignored":
                    return None
                return (1, None)

            tg.start_soon(
                _respond_until_shutdown, redis.url, "builder", answer, ready, seen
            )
            await ready.wait()
            await wait_for(lambda: len(bridge.responders) == 1)
            (rid,) = bridge.responders

            receipt = await state.send(Set("jobs.build", "started"))
            report = await receipt.acks(timeout=5)
            assert report.result is ResultCode.ALL_SUBS_SUCCESS
            assert [a.subscriber for a in report.acks] == [rid]

            report = await (await state.send(Set("jobs.build", "broken"))).acks(5)
            assert report.result is ResultCode.SUB_FAILED
            assert report.acks[0].message == "cannot build"

            report = await (await state.send(Set("jobs.n", 7))).acks(5)
            assert report.ok  # a non-str value: the event is the path
            signal = next(s for s in seen if s.event == "jobs.n")
            assert signal.sample_no == receipt.revision + 2
            assert signal.metadata["value"] == 7
            assert signal.metadata["path"] == "jobs.n"

            joined = bridge.responders[rid]
            for i in range(2):
                ignored = Set(f"jobs.step{i}", "ignored")
                report = await (await state.send(ignored)).acks(5)
                assert report.result is ResultCode.MISSING_RESPONSE, (report, rid)
                assert report.missing == (rid,)
            # Dropped, then it joins again at the next initialization it
            # answers: maybe within the 10 ms between two looks, so the drop
            # is seen as a new membership, not as an absence.
            await wait_for(lambda: bridge.responders.get(rid) is not joined)
            await wait_for(lambda: rid in bridge.responders)
            assert bridge.responders[rid] is not joined
        # The bridge said shutdown when it stopped: the responder returned.
        assert seen[-1].event == "shutdown"


async def test_the_bridge_drops_malformed_messages_and_keeps_serving(redis):
    good = {
        "publisher_id": "p",
        "process_name": "x",
        "event": "e",
        "runner_host": "h",
        "sample_no": 1,
        "tag": "t",
    }
    bad = [
        b"not json",
        b"[1, 2]",
        b"7",
        b'{"publisher_id": 1}',
        b"NaN",
        b'{"a": ' * 100_000,
        b"x" * ((1 << 20) + 10),
        json.dumps({**good, "sample_no": "1"}).encode(),  # a wrong type
        json.dumps({**good, "extra": 1}).encode(),  # an extra key
        json.dumps({**good, "metadata": [1]}).encode(),  # not an object
        b"\xff\xfe",
    ]
    with anyio.fail_after(20):
        async with (
            open_state({}) as state,
            serve_redis(
                state,
                redis.url,
                name=NAME,
                signals=Signals(respond_as=("ok",), export="jobs.**"),
            ) as server,
        ):
            await state.subscribe("signals.**", lambda e: None, name="ok")
            bridge = server.signals
            async with open_connection(redis.url) as raw:
                for data in bad:
                    await raw.publish(sp.SIGNALS, data)
                    await raw.publish(sp.RESPONSES, data)
                await wait_for(lambda: bridge.dropped == 2 * len(bad))
            async with open_exporter(redis.url, "after") as exporter:
                assert await exporter.initialize_and_wait(1, ["go"], timeout=10) == 0
                assert (await exporter.publish_signal("go"))[0] == 0
            assert bridge.applied == 2


async def test_the_bridge_comes_back_after_redis_restarts(redis):
    async def checker(event):
        return RAS.SUCCESS

    with anyio.fail_after(30):
        async with (
            open_state({}) as state,
            serve_redis(
                state, redis.url, name=NAME, signals=Signals(respond_as=("checker",))
            ) as server,
        ):
            await state.subscribe("signals.**", checker, name="checker")
            bridge = server.signals
            await anyio.to_thread.run_sync(redis.restart)
            await wait_for(lambda: bridge.reconnects >= 1)
            # Pub/sub keeps nothing: an initialization published before the
            # bridge is back is lost, so the exporter publishes it again.
            async with open_exporter(redis.url, "after") as exporter:
                legal = ["go"]
                waited = await exporter.initialize_and_wait(
                    1, legal, timeout=10, periodic=True
                )
                assert waited == 0
                assert (await exporter.publish_signal("go"))[0] == 0


async def test_bad_arguments_are_typed_errors_before_anything_is_published(redis):
    # A junk-argument run found a timeout of NaN or "1" raising ValueError or
    # TypeError from the deadline, and a text that holds a lone surrogate
    # UnicodeEncodeError from the encoder.
    with anyio.fail_after(20):
        async with (
            open_exporter(redis.url, "proc") as exporter,
            open_responder(redis.url, "resp") as responder,
        ):
            await exporter.initialize(["run", "x\ud800"])
            for timeout in (float("nan"), "1", float("inf"), -2):
                with pytest.raises(InvalidActionError, match="timeout"):
                    await exporter.publish_signal("run", timeout=timeout)
            for kwargs in ({"metadata": {"k": float("nan")}}, {"tag": "t\ud800"}):
                with pytest.raises(InvalidActionError):
                    await exporter.publish_signal("run", timeout=0, **kwargs)
            with pytest.raises(InvalidActionError):
                await exporter.publish_signal("x\ud800", timeout=0)
            with pytest.raises(InvalidActionError):
                await responder.respond("p-1", "run", 1, "bad \udc80")
            code, _ = await exporter.publish_signal("run", timeout=0)
            assert isinstance(code, ResultCode)  # (the exporter is whole)


async def test_exporters_that_never_shut_down_are_forgotten_past_the_bound(
    monkeypatch, caplog
):
    # No Redis needed: the bridge's responder side is fed signals directly.
    from stateward.signals import bridge as bridge_module

    monkeypatch.setattr(bridge_module, "MAX_EXPORTERS", 3)

    def signal(pub_id, event):
        return sp.Signal(pub_id, f"proc-{pub_id}", event, "host").to_json()

    async with open_state({}) as state:
        bridge = Signals().bridge(state, "redis://127.0.0.1:1/0", NAME)
        for pub_id in ("a", "b", "c"):
            await bridge._on_signal(signal(pub_id, sp.INITIALIZATION))
        await bridge._on_signal(signal("a", "tick"))  # heard from: kept
        await bridge._on_signal(signal("d", sp.INITIALIZATION))
        assert list(bridge.exporters) == ["c", "a", "d"]
        assert "'proc-b' (b) forgotten" in caplog.text
        for i in range(100):
            await bridge._on_signal(signal(f"x{i}", sp.INITIALIZATION))
        assert list(bridge.exporters) == ["x97", "x98", "x99"]
        await bridge._on_signal(signal("x98", sp.SHUTDOWN))
        assert list(bridge.exporters) == ["x97", "x99"]
        assert bridge.applied == 106  # every signal still lands in the state
        assert (await state.get("signals.proc-x99"))["event"] == sp.INITIALIZATION


async def test_a_stopped_bridge_leaves_no_responder_subscribed(redis):
    # Its responders' stand-ins stayed subscribed to the state once the
    # server stopped: each change then waited for an answer nobody relayed.
    config = Signals(export="jobs.**", response_timeout=0.5, reinitialize=0.2)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg, open_state({}) as state:
            async with serve_redis(
                state, redis.url, name=NAME, signals=config
            ) as server:
                ready = anyio.Event()
                tg.start_soon(
                    _respond_until_shutdown, redis.url, "r", lambda s: (1, None), ready
                )
                await ready.wait()
                await wait_for(lambda: len(server.signals.responders) == 1)
                (rid,) = server.signals.responders
                assert rid in state.subscriber_statistics()
            assert rid not in state.subscriber_statistics()
            report = await (await state.send(Set("jobs.x", "go"))).acks(5)
            assert report.acks == ()
            assert report.missing == ()
