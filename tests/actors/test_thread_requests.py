"""A thread's request (a Store call) applied on the loop at once when the actor is idle.

The state actor, parked on an empty mailbox, would take such a request on
its next turn; the loop's callback applies it right away instead (one loop
turn less per Store call). These tests hold that shortcut to what the
actor's own step guarantees: nothing overtakes an earlier request, a
subscriber's deliveries stay in order when one must wait for room, and a
crash in the step breaks the state as it would in the actor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest
from parked import parked

from stateward import Set, StateActor, StateBrokenError, open_state
from stateward.actors._handoff import ThreadSignal

if TYPE_CHECKING:
    from stateward import StateHandle
    from stateward.actors._core import _Request
    from stateward.messages.events import StateChanged

pytestmark = pytest.mark.anyio


def _from_thread(state: StateHandle, path: str, value: int) -> _Request:
    """Hand *state* a request as the Store's loop callback does; return it."""
    request = state._request(Set(path, value), None, ThreadSignal())
    state._put_from_thread(request)
    return request


async def test_an_idle_actor_applies_a_threads_request_in_the_callback() -> None:
    with anyio.fail_after(5):
        async with open_state({"n": 0}) as state:
            await parked(state)
            request = _from_thread(state, "n", 1)
            # No checkpoint in between: applied and answered in the callback.
            assert request.done.is_set()
            assert request.receipt is not None
            assert request.receipt.revision == state.revision == 1
            assert state.get_nowait("n") == 1


async def test_a_threads_request_never_overtakes_a_task_send_already_queued() -> None:
    with anyio.fail_after(5):
        async with open_state({"x": 0}) as state:
            await parked(state)
            # A task's send enters the mailbox and wakes the actor; before the
            # actor runs, a thread's request arrives in a loop callback.
            first = state._request(Set("x", 1), None)
            state._mailbox.put(first)
            second = _from_thread(state, "x", 2)
            assert not second.done.is_set()  # queued behind, not applied
            await first.done.wait()
            await state.send(Set("after", True))  # queued after the second
            assert second.done.is_set()
            assert first.receipt is not None
            assert second.receipt is not None
            assert first.receipt.revision < second.receipt.revision
            assert state.get_nowait("x") == 2


async def test_a_delivery_that_waits_for_room_keeps_every_event_in_order() -> None:
    seen: list[int] = []
    gate = anyio.Event()

    async def slow(event: StateChanged) -> None:
        await gate.wait()
        seen.append(event.new_value)  # type: ignore[arg-type]

    with anyio.fail_after(5):
        async with open_state({"n": 0}) as state:
            await state.subscribe(
                "n", slow, name="slow", mailbox_size=1, block_timeout=10
            )
            await parked(state)
            first = _from_thread(state, "n", 1)  # the handler takes it, waits
            await parked(state)
            while state.subscriber_statistics()["slow"].queued:
                await anyio.lowlevel.checkpoint()
            second = _from_thread(state, "n", 2)  # fills the mailbox
            third = _from_thread(state, "n", 3)  # must wait for room
            assert first.done.is_set()
            assert second.done.is_set()
            assert third.done.is_set()  # a slow subscriber never holds a receipt
            # Until the third's delivery is in, the next request waits its turn.
            fourth = _from_thread(state, "n", 4)
            await anyio.lowlevel.checkpoint()
            assert not fourth.done.is_set()
            gate.set()
            await state.send(Set("sync", True))  # queued after the fourth
            assert fourth.done.is_set()
            while len(seen) < 4:
                await anyio.lowlevel.checkpoint()
    assert seen == [1, 2, 3, 4]


async def test_a_crash_while_applying_a_threads_request_breaks_the_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stateward.actors import _core

    original = _core._Core.process

    def process(self: _core._Core, request: _Request) -> None:
        if getattr(request.action, "path", None) == "crash":
            raise ZeroDivisionError("simulated bug")
        original(self, request)

    monkeypatch.setattr(_core._Core, "process", process)
    with anyio.fail_after(5), pytest.raises(BaseExceptionGroup) as info:  # noqa: PT012
        async with anyio.create_task_group() as tg:
            state = await tg.start(StateActor().run)
            await parked(state)
            request = _from_thread(state, "crash", 1)
            await anyio.sleep_forever()  # the actor raises the crash
    assert info.group_contains(ZeroDivisionError)
    assert request.done.is_set()  # refused, never left waiting
    assert isinstance(request.error, StateBrokenError)
    assert state.closed
    with pytest.raises(StateBrokenError):
        await state.send(Set("after", 1))


async def test_a_call_arriving_during_a_drain_waits_behind_the_tasks_made_ready(
    anyio_backend_name: str,
) -> None:
    """Threads calling without pause never keep the loop's other tasks waiting.

    A call that arrives while the loop runs the calls before it (another
    thread was quicker than the loop) gets a drain of its own, scheduled
    behind the tasks those calls woke (a reaction woken by a write, say).
    """
    import threading

    from stateward.actors._handoff import LoopCaller

    order: list[str] = []

    class Counting(LoopCaller):
        __slots__ = ("drains",)

        def _drain(self) -> None:
            self.drains = getattr(self, "drains", 0) + 1
            order.append(f"drain {self.drains}")
            super()._drain()

    caller = Counting.here()
    woken = anyio.Event()

    async def task() -> None:
        await woken.wait()
        order.append("task")

    def second() -> None:
        order.append("second call")

    def first() -> None:
        order.append("first call")
        woken.set()  # a task is ready now
        # Another thread's call lands while this drain is still running.
        late = threading.Thread(target=caller.submit, args=(second,))
        late.start()
        late.join()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(task)
            await anyio.lowlevel.checkpoint()  # the task waits
            threading.Thread(target=caller.submit, args=(first,)).start()
            while len(order) < 5:
                await anyio.lowlevel.checkpoint()
    assert order[:2] == ["drain 1", "first call"]
    assert order.index("drain 2") + 1 == order.index("second call")  # its own
    if anyio_backend_name == "asyncio":  # (trio shuffles ready tasks on purpose)
        assert order == ["drain 1", "first call", "task", "drain 2", "second call"]
