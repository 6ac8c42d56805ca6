"""Timeouts, checked on a virtual clock: exact times, no real sleeping."""

from __future__ import annotations

import anyio
import pytest
from trio.testing import MockClock

from stateward import RAS, Overflow, ResultCode, Resync, Set, open_state

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return ("trio", {"clock": MockClock(autojump_threshold=0)})


async def hang_forever(event):
    await anyio.sleep_forever()


async def test_missing_ack_is_reported_exactly_at_the_timeout():
    async def quick(event):
        return RAS.SUCCESS

    async with open_state({}) as state:
        await state.subscribe("", hang_forever, name="hung")
        await state.subscribe("", quick, name="quick")
        receipt = await state.send(Set("a", 1))
        start = anyio.current_time()
        report = await receipt.acks(timeout=2.5)
        assert anyio.current_time() - start == 2.5
        assert report.result is ResultCode.MISSING_RESPONSE
        assert report.missing == ("hung",)
        assert [a.subscriber for a in report.acks] == ["quick"]
        await state.stop(timeout=0)


async def test_failure_wins_over_missing():
    async def no(event):
        return RAS.FAILURE

    async with open_state({}) as state:
        await state.subscribe("", hang_forever, name="hung")
        await state.subscribe("", no, name="no")
        report = await (await state.send(Set("a", 1))).acks(timeout=1)
        assert report.result is ResultCode.SUB_FAILED
        assert report.missing == ("hung",)
        await state.stop(timeout=0)


async def test_handler_timeout_answers_timeout_and_the_subscriber_goes_on():
    calls = []

    async def sometimes_hangs(event):
        calls.append(event.new_value)
        if event.new_value == "hang":
            await anyio.sleep_forever()
        return RAS.SUCCESS

    async with open_state({}) as state:
        await state.subscribe("", sometimes_hangs, name="h", handler_timeout=3)
        start = anyio.current_time()
        hung = await (await state.send(Set("a", "hang"))).acks()
        assert anyio.current_time() - start == 3
        assert hung.failed[0].ras == RAS.TIMEOUT
        assert hung.failed[0].message == "handler took longer than 3.0s"
        fine = await (await state.send(Set("a", "fine"))).acks()
        assert fine.ok
    assert calls == ["hang", "fine"]


async def test_block_policy_stalls_at_most_block_timeout_per_overflow_episode():
    gate = anyio.Event()
    seen = []

    async def slow(event):
        seen.append(event)
        await gate.wait()

    async with open_state({}) as state:
        sub = await state.subscribe(
            "",
            slow,
            name="slow",
            overflow=Overflow.BLOCK,
            mailbox_size=2,
            block_timeout=10,
        )
        start = anyio.current_time()
        for i in range(20):
            await state.send(Set("n", i))
        await (await state.send(Set("probe", 1))).acks(timeout=0)
        # 1 in the handler + 2 queued; the 4th waited 10 s and was dropped,
        # and everything after it was dropped at once: one stall, not 17.
        assert anyio.current_time() - start == 10
        assert sub.statistics().dropped == 18
        gate.set()
        await anyio.wait_all_tasks_blocked()
        assert isinstance(seen[-1], Resync)
        assert seen[-1].dropped == 18


async def test_a_full_block_mailbox_delays_the_next_actions_not_this_batchs_receipts():
    """Senders of one batch get their receipts at once, though its events wait."""
    gate = anyio.Event()
    answered = {}

    async def slow(event):
        await gate.wait()

    async def sender(i):
        await state.send(Set(f"n{i}", i))
        answered[i] = anyio.current_time()

    async with open_state({}) as state:
        await state.subscribe("", slow, name="slow", mailbox_size=1, block_timeout=10)
        async with anyio.create_task_group() as tg:
            for i in range(4):  # one batch: the 2nd delivery finds no room
                tg.start_soon(sender, i)
        assert answered == {0: 0, 1: 0, 2: 0, 3: 0}
        start = anyio.current_time()
        await state.send(Set("next", 1))  # waits behind the blocked deliveries
        assert anyio.current_time() - start == 10
        gate.set()


async def test_unsubscribing_a_full_block_subscriber_frees_the_actor_at_once():
    """The actor waiting for room in its mailbox stops waiting when it goes."""
    async with open_state({}) as state:
        sub = await state.subscribe(
            "", hang_forever, name="hung", mailbox_size=1, block_timeout=10
        )
        await state.send(Set("a", 1))  # in the handler, for ever
        await state.send(Set("a", 2))  # queued
        blocked = await state.send(Set("a", 3))  # the actor waits for room
        start = anyio.current_time()
        await sub.unsubscribe()
        await state.send(Set("a", 4))
        assert anyio.current_time() - start == 0
        report = await blocked.acks(timeout=0)
        assert report.missing == ("hung",)


async def test_a_second_overflow_episode_stalls_once_more_at_most():
    gate = anyio.Event()

    async def slow(event):
        await gate.wait()

    async with open_state({}) as state:
        sub = await state.subscribe(
            "", slow, name="slow", mailbox_size=2, block_timeout=10
        )
        for episode in range(1, 4):
            gate = anyio.Event()
            start = anyio.current_time()
            for i in range(10):
                await state.send(Set("n", i + 100 * episode))
            assert anyio.current_time() - start == 10
            assert sub.statistics().dropped == 7 * episode
            gate.set()  # the subscriber catches up and takes its Resync
            await anyio.wait_all_tasks_blocked()
            assert sub.statistics().queued == 0


async def test_stop_waits_for_subscribers_at_most_its_timeout():
    async with open_state({}) as state:
        await state.subscribe("", hang_forever, name="hung")
        await state.send(Set("a", 1))
        start = anyio.current_time()
        await state.stop(timeout=7)
        assert anyio.current_time() - start == 7
