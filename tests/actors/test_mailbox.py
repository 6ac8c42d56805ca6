"""The state actor's mailbox and the loop's one-waiter signals."""

from __future__ import annotations

import anyio
import pytest

from stateward.actors._mailbox import Mailbox, current_backend

pytestmark = pytest.mark.anyio


async def test_items_leave_in_arrival_order_parked_ones_included() -> None:
    box: Mailbox[int] = Mailbox(3, current_backend().new_signal)
    for i in range(3):
        assert box.put_nowait(i)
    assert not box.put_nowait(3)  # full
    for i in range(3, 8):
        box.put(i)
    assert (len(box), box.parked) == (3, 5)
    assert box.take(4) == [0, 1, 2, 3]  # the queue, then parked ones
    assert (len(box), box.parked) == (3, 1)  # room filled from the parked
    assert not box.put_nowait(99)  # someone is parked: no overtaking
    assert box.take(10) == [4, 5, 6, 7]
    assert box.put_nowait(8)
    assert box.take(10) == [8]


async def test_withdraw_takes_back_parked_items_only() -> None:
    box: Mailbox[str] = Mailbox(1, current_backend().new_signal)
    assert box.put_nowait("queued")
    for name in ("p1", "p2", "p3"):
        box.put(name)
    assert box.withdraw("p2")
    assert not box.withdraw("p2")  # gone already
    assert not box.withdraw("queued")  # in the mailbox: the receiver skips it
    assert box.parked == 2
    assert box.take(10) == ["queued", "p1", "p3"]


async def test_ten_thousand_parked_items_withdrawn_in_any_order() -> None:
    box: Mailbox[int] = Mailbox(1, current_backend().new_signal)
    assert box.put_nowait(-1)
    for i in range(10_000):
        box.put(i)
    for i in range(0, 10_000, 2):  # every other one, oldest first
        assert box.withdraw(i)
    assert box.parked == 5_000
    assert box.take(20_000) == [-1, *range(1, 10_000, 2)]


async def test_close_returns_everything_and_refuses_more() -> None:
    box: Mailbox[int] = Mailbox(1, current_backend().new_signal)
    assert box.put_nowait(1)
    box.put(2)
    assert box.close() == [1, 2]
    with pytest.raises(anyio.ClosedResourceError):
        box.put_nowait(3)
    with pytest.raises(anyio.ClosedResourceError):
        box.put(3)


async def test_wait_returns_when_an_item_arrives() -> None:
    box: Mailbox[int] = Mailbox(4, current_backend().new_signal)
    got: list[int] = []

    async def receiver() -> None:
        await box.wait()
        got.extend(box.take(10))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver)
            await anyio.wait_all_tasks_blocked()
            assert got == []
            box.put_nowait(7)
    assert got == [7]


@pytest.mark.parametrize("set_first", [True, False])
async def test_a_signal_is_abandoned_only_by_a_waiter_cancelled_before_it_is_set(
    set_first: bool,
) -> None:
    signal = current_backend().new_signal()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(signal.wait)
            await anyio.wait_all_tasks_blocked()
            if set_first:
                signal.set()
            tg.cancel_scope.cancel()  # too late when it was set
            # Known at once, before the waiter has even run again:
            assert signal.abandoned() is not set_first
    assert signal.is_set() is set_first
    signal.set()  # harmless afterwards
    assert signal.abandoned() is not set_first


async def test_waiting_on_a_set_signal_is_still_a_checkpoint() -> None:
    signal = current_backend().new_signal()
    signal.set()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await signal.wait()
    assert scope.cancelled_caught
