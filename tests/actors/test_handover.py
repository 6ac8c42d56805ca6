"""A Handover handler: deliveries taken at once by the state actor, in order."""

from __future__ import annotations

import anyio
import pytest

from stateward import RAS, Resync, Set, StateChanged, Transaction, open_state
from stateward.actors._handover import Handover

pytestmark = pytest.mark.anyio


class Gate(Handover):
    """Takes offers while :attr:`room`; its awaited call waits for :attr:`opened`."""

    def __init__(self) -> None:
        super().__init__("gate")
        self.got: list[tuple[int, str]] = []
        self.offers = 0
        self.calls = 0
        self.room = True
        self.opened = anyio.Event()

    def offer(self, events: tuple[StateChanged, ...]) -> bool:
        self.offers += 1
        if not self.room:
            return False
        self.got.extend((e.revision, e.path) for e in events)
        return True

    async def __call__(self, event: StateChanged | Resync) -> int:
        self.calls += 1
        await self.opened.wait()
        assert isinstance(event, StateChanged)
        self.got.append((event.revision, event.path))
        return RAS.SUCCESS


async def test_an_offer_taken_is_acked_at_once_without_the_subscribers_task() -> None:
    async with open_state({"n": 0}) as state:
        gate = Gate()
        await state.subscribe("", gate)
        receipt = await state.send(Set("n", 1))
        # Taken during the send itself, all events of a delivery in one offer.
        assert gate.got == [(1, "n")]
        report = await receipt.acks()
        assert report.ok
        assert [(a.subscriber, a.ras) for a in report.acks] == [("gate", RAS.SUCCESS)]
        await state.send(Transaction([Set("a", 1), Set("b", 2)]))
        assert gate.got == [(1, "n"), (2, "a"), (2, "b")]
        assert (gate.offers, gate.calls) == (2, 0)
        stats = state.subscriber_statistics()["gate"]
        assert (stats.delivered, stats.acks_ok, stats.peak) == (2, 2, 0)


async def test_nothing_is_offered_while_the_subscriber_handles_a_delivery() -> None:
    async with open_state({"n": 0}) as state:
        gate = Gate()
        await state.subscribe("n", gate)
        await state.send(Set("n", 1))  # taken at once
        gate.room = False
        refused = await state.send(Set("n", 2))  # through the mailbox
        await anyio.wait_all_tasks_blocked()  # the subscriber awaits the gate
        assert gate.calls == 1
        gate.room = True  # room again, but revision 2 is still being handled
        await state.send(Set("n", 3))
        assert gate.got == [(1, "n")]
        gate.opened.set()
        with anyio.fail_after(5):
            assert (await refused.acks()).ok
            while len(gate.got) < 3:
                await anyio.lowlevel.checkpoint()
        assert gate.got == [(1, "n"), (2, "n"), (3, "n")]
        # Once the mailbox is empty again, offers are taken again.
        await state.send(Set("n", 4))
        assert gate.got[-1] == (4, "n")
        assert gate.calls == 2
