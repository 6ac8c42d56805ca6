"""Unchanged state-signals 1.0.1 exporters and responders (processes) meet stateward."""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from stateward import RAS, ResultCode, Set, open_state
from stateward.remote import serve_redis
from stateward.signals import Signals, open_exporter, open_responder

from .redislib import wait_for

pytestmark = pytest.mark.anyio

NAME = "jobs"
SCRIPT = str(Path(__file__).with_name("signals_ref.py"))


class _Lines:
    def __init__(self, process):
        self.process = process
        self.stream = BufferedByteReceiveStream(process.stdout)

    async def next(self):
        line = await self.stream.receive_until(b"\n", 1 << 20)
        return json.loads(line)

    async def until(self, predicate):
        while True:
            item = await self.next()
            if predicate(item):
                return item


@contextlib.asynccontextmanager
async def _reference(python, *args):
    process = await anyio.open_process(
        [python, SCRIPT, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        yield _Lines(process)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.aclose()


async def _run_exporter(python, port, process_name, subs, events):
    result = await anyio.run_process(
        [
            python,
            SCRIPT,
            "exporter",
            str(port),
            process_name,
            str(subs),
            json.dumps(events),
        ],
        check=True,
    )
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


async def test_an_unchanged_exporter_is_answered_by_stateward_subscribers(
    redis, reference_python
):
    async def checker(event):
        if event.new_value["event"] == "fail":
            return RAS.FAILURE, "disk full"
        if event.new_value["event"] == "slow":
            await release.wait()  # answered once the exporter gave up on it
        return RAS.SUCCESS

    seen = []
    release = anyio.Event()
    signals = Signals(respond_as=("checker", "recorder"), ack_timeout=10)
    with anyio.fail_after(60):
        async with (
            open_state({}) as state,
            serve_redis(state, redis.url, name=NAME, signals=signals) as server,
        ):
            await state.subscribe("signals.**", checker, name="checker")
            await state.subscribe("signals.**", seen.append, name="recorder")
            events = [["start", 20], ["fail", 20], ["slow", 1]]
            lines = await _run_exporter(reference_python, redis.port, "fio", 2, events)
            release.set()
            bridge = server.signals
            init, start, fail, slow, done = lines
            assert init["init"] == 0
            assert set(init["subs"]) == set(bridge.responder_ids.values())
            assert start == {"event": "start", "code": 0, "msgs": {}}
            assert fail["code"] == 1
            assert fail["msgs"] == {bridge.responder_ids["checker"]: "disk full"}
            assert slow["code"] == 2  # the timeout passed first
            assert done == {"done": True}
            await wait_for(lambda: len(seen) == 5)
            values = [e.new_value for e in seen]
            assert [v["event"] for v in values] == [
                "initialization",
                "start",
                "fail",
                "slow",
                "shutdown",
            ]
            assert [v["sample_no"] for v in values[1:4]] == [1, 2, 3]
            assert values[1]["metadata"] == {"i": 1}
            assert values[1]["tag"] == "run-1"
            assert all(e.path == "signals.fio" for e in seen)
            assert {e.source for e in seen} == {init["pub_id"]}
            revisions = [e.revision for e in seen]
            assert revisions == sorted(revisions)
            assert (await state.get("signals.fio"))["event"] == "shutdown"


async def test_unchanged_responders_acknowledge_stateward_actions(
    redis, reference_python
):
    config = Signals(
        export="jobs.**", response_timeout=1.0, max_misses=3, reinitialize=0.3
    )
    answers = {"broken": [0, "cannot build"]}
    port = str(redis.port)
    with anyio.fail_after(60):
        async with (
            open_state({}) as state,
            serve_redis(state, redis.url, name=NAME, signals=config) as server,
            _reference(reference_python, "responder", port, "ok", "{}") as ok,
            _reference(
                reference_python, "responder", port, "picky", json.dumps(answers)
            ) as picky,
        ):
            bridge = server.signals
            ok_id = (await ok.next())["ready"]
            picky_id = (await picky.next())["ready"]
            await wait_for(lambda: set(bridge.responders) == {ok_id, picky_id})

            report = await (await state.send(Set("jobs.build", "started"))).acks(10)
            assert report.result is ResultCode.ALL_SUBS_SUCCESS
            assert {a.subscriber for a in report.acks} == {ok_id, picky_id}
            signal = await ok.until(lambda item: item.get("event") == "started")
            assert signal["metadata"]["path"] == "jobs.build"
            assert signal["metadata"]["value"] == "started"
            assert signal["sample_no"] == signal["metadata"]["revision"]

            report = await (await state.send(Set("jobs.build", "broken"))).acks(10)
            assert report.result is ResultCode.SUB_FAILED
            (failed,) = report.failed
            assert (failed.subscriber, failed.message) == (picky_id, "cannot build")

            ok.process.kill()
            report = await (await state.send(Set("jobs.build", "next"))).acks(10)
            assert report.result is ResultCode.MISSING_RESPONSE
            assert report.missing == (ok_id,)

            async with _reference(
                reference_python, "responder", port, "late", "{}"
            ) as late:
                late_id = (await late.next())["ready"]
                await wait_for(lambda: late_id in bridge.responders)
                report = await (await state.send(Set("jobs.build", "again"))).acks(10)
                assert {a.subscriber for a in report.acks} == {picky_id, late_id}


async def test_the_native_api_interoperates_with_the_reference(redis, reference_python):
    # A reference exporter answered by a native responder.
    async def respond(responder, task_status):
        task_status.started()
        async for signal in responder.listen():
            if signal.event == "initialization":
                await responder.srespond(signal)
            elif signal.event == "fail":
                await responder.srespond(signal, 0, "no")
            elif signal.event != "shutdown":
                await responder.srespond(signal, 1)

    with anyio.fail_after(60):
        async with (
            open_responder(redis.url, "native") as responder,
            anyio.create_task_group() as tg,
        ):
            await tg.start(respond, responder)
            events = [["go", 20], ["fail", 20]]
            lines = await _run_exporter(reference_python, redis.port, "ref", 1, events)
            assert lines[0]["subs"] == [responder.responder_id]
            assert [line.get("code") for line in lines[1:3]] == [0, 1]
            assert lines[2]["msgs"] == {responder.responder_id: "no"}
            tg.cancel_scope.cancel()

        # A native exporter answered by a reference responder.
        port = str(redis.port)
        answers = json.dumps({"fail": [0, "bad"]})
        async with (
            _reference(reference_python, "responder", port, "ref", answers) as ref,
            open_exporter(redis.url, "native") as exporter,
        ):
            ref_id = (await ref.next())["ready"]
            assert (
                await exporter.initialize_and_wait(1, ["go", "fail"], timeout=10) == 0
            )
            assert exporter.subs == {ref_id}
            assert await exporter.publish_signal("go") == (
                ResultCode.ALL_SUBS_SUCCESS,
                {},
            )
            assert await exporter.publish_signal("fail") == (
                ResultCode.SUB_FAILED,
                {ref_id: "bad"},
            )
