from __future__ import annotations

import math
import random
import time

import anyio
import pytest

from stateward import (
    RAS,
    ActionRejectedError,
    ChangeKind,
    Delete,
    DuplicateNameError,
    InvalidActionError,
    InvalidPathError,
    Merge,
    Overflow,
    PathConflictError,
    Ping,
    ResultCode,
    Resync,
    Set,
    StateActor,
    StateBrokenError,
    StateChanged,
    StateClosedError,
    Transaction,
    open_state,
)
from stateward.actors.subscriber import _TIME_SLICE, _YIELD_EVERY

pytestmark = pytest.mark.anyio


class Recorder:
    """A handler that records what it receives and answers with a fixed code."""

    def __init__(self, code=RAS.SUCCESS):
        self.events: list[StateChanged | Resync] = []
        self.code = code

    async def __call__(self, event):
        self.events.append(event)
        return self.code

    @property
    def paths(self):
        return [e.path for e in self.events if isinstance(e, StateChanged)]


class Gate:
    """A handler that blocks until opened; counts what it has entered."""

    def __init__(self):
        self.opened = anyio.Event()
        self.entered = 0
        self.events: list[StateChanged | Resync] = []

    async def __call__(self, event):
        self.entered += 1
        self.events.append(event)
        await self.opened.wait()
        return RAS.SUCCESS


async def test_issue_snippet_runs_in_a_task_group():
    seen = []
    async with anyio.create_task_group() as tg:
        state = await tg.start(
            StateActor(initial={"job": {"bins": 10, "sorted": 0}}).run
        )

        async def display(event):
            seen.append((event.path, event.old_value, event.new_value))
            return RAS.SUCCESS

        await state.subscribe("job.*", display, name="display")

        async def worker(n):
            receipt = await state.send(Set("job.sorted", n, source=f"worker-{n}"))
            report = await receipt.acks(timeout=5)
            assert report.ok, report

        async with anyio.create_task_group() as workers:
            for n in range(3):
                workers.start_soon(worker, n)
        final = await state.get("job.sorted")
        await state.stop()
    # Every event is a real change, and they chain from 0 to the final value.
    assert all(old != new for _, old, new in seen)
    assert [old for _, old, _ in seen] == [0] + [new for _, _, new in seen[:-1]]
    assert seen[-1][2] == final


async def test_send_returns_after_apply_and_reads_see_it():
    async with open_state({"a": 1}) as state:
        receipt = await state.send(Set("a", 2))
        assert state.get_nowait("a") == 2
        assert await state.get("a") == 2
        assert receipt.revision == state.revision == 1
        assert receipt.changed
        assert receipt.subscribers == ()
        report = await receipt.acks(timeout=1)
        assert report.ok
        assert report.result is ResultCode.ALL_SUBS_SUCCESS


async def test_get_returns_private_copies_and_defaults():
    async with open_state({"a": {"b": [1]}}) as state:
        got = await state.get("a")
        got["b"].append(2)
        assert await state.get("a.b") == [1]
        assert await state.get("nope", 5) == 5
        assert await state.get("nope") is None
        assert await state.get() == {"a": {"b": [1]}}
        with pytest.raises(InvalidPathError):
            await state.get("a..b")


async def test_revisions_are_monotonic_and_each_subscriber_sees_them_in_order():
    recorder = Recorder()
    async with open_state({}, mailbox_size=8) as state:
        await state.subscribe("w.**", recorder, name="all", mailbox_size=1000)
        receipts: dict[int, list[int]] = {}

        async def worker(w):
            receipts[w] = []
            for i in range(50):
                r = await state.send(Set(f"w.{w}", i, source=str(w)))
                receipts[w].append(r.revision)

        async with anyio.create_task_group() as tg:
            for w in range(10):
                tg.start_soon(worker, w)
    # each worker's own revisions increase; all revisions are unique
    everything = []
    for revs in receipts.values():
        assert revs == sorted(revs)
        everything.extend(revs)
    assert sorted(everything) == list(range(1, 501))
    seen = [e.revision for e in recorder.events]
    assert seen == list(range(1, 501)), "subscriber missed or reordered revisions"
    # each worker's values arrive in the order it sent them
    for w in range(10):
        values = [e.new_value for e in recorder.events if e.source == str(w)]
        assert values == list(range(50))


async def test_bubbling_wildcards_and_non_matching():
    subs = {
        "root": "",
        "job": "job",
        "star": "job.*",
        "globstar": "job.**",
        "bins": "job.bins",
        "status": "jobs.*.status",
        "other": "other",
    }
    recorders = {name: Recorder() for name in subs}
    async with open_state({"job": {}, "jobs": {"7": {}}}) as state:
        for name, pattern in subs.items():
            await state.subscribe(pattern, recorders[name], name=name)
        r1 = await state.send(Set("job.bins", 3))
        r2 = await state.send(Set("jobs.7.status", "done"))
    assert set(r1.subscribers) == {"root", "job", "star", "globstar", "bins"}
    assert set(r2.subscribers) == {"root", "status"}
    assert recorders["other"].events == []


async def test_write_above_reaches_a_literal_subscriber_only_if_its_value_changed():
    bins = Recorder()
    async with open_state({"job": {"bins": 1, "sorted": 0}}) as state:
        await state.subscribe("job.bins", bins, name="bins")
        r1 = await state.send(Set("job", {"bins": 1, "sorted": 5}))
        r2 = await state.send(Set("job", {"bins": 2, "sorted": 5}))
        r3 = await state.send(Set("", {}))
    assert r1.subscribers == ()
    assert r2.subscribers == ("bins",)
    assert r3.subscribers == ("bins",)
    assert [(e.path, e.kind) for e in bins.events] == [
        ("job", ChangeKind.UPDATED),
        ("", ChangeKind.UPDATED),
    ]


async def test_stop_bubbling_keeps_changes_from_ancestors():
    root, job, inner = Recorder(), Recorder(), Recorder()
    async with open_state({}) as state:
        await state.subscribe("", root, name="root")
        await state.subscribe("job", job, name="job", stop_bubbling=True)
        await state.subscribe("job.inner", inner, name="inner")
        r1 = await state.send(Set("job.inner.x", 1))
        r2 = await state.send(Set("elsewhere", 1))
        r3 = await state.send(Set("job", 5))
    assert set(r1.subscribers) == {"job", "inner"}
    assert r2.subscribers == ("root",)
    # a write AT the stopping subscriber's path is not bubbling: root still hears it
    assert set(r3.subscribers) == {"root", "job", "inner"}


async def test_transaction_is_one_delivery_and_one_ack_per_subscriber():
    recorder = Recorder()
    async with open_state({}) as state:
        await state.subscribe("", recorder, name="r")
        receipt = await state.send(
            Transaction([Set("a", 1), Set("b", 2), Merge("c", {"x": 1})])
        )
        report = await receipt.acks(timeout=5)
    assert [e.path for e in recorder.events] == ["a", "b", "c"]
    assert {e.revision for e in recorder.events} == {receipt.revision}
    assert len(report.acks) == 1
    assert report.acks[0].revision == receipt.revision


async def test_events_carry_action_metadata():
    recorder = Recorder()
    async with open_state({}) as state:
        await state.subscribe("", recorder, name="r")
        action = Set("a", {"v": 1}, source="w1", payload={"why": "test"})
        await state.send(action)
        await state.send(Ping("a"))
        await state.send(Delete("a"))
    created, pinged, deleted = recorder.events
    assert (created.kind, created.old_value, created.new_value) == (
        ChangeKind.CREATED,
        None,
        {"v": 1},
    )
    assert (created.source, created.payload, created.action_id) == (
        "w1",
        {"why": "test"},
        action.id,
    )
    assert (pinged.kind, pinged.old_value, pinged.new_value) == (
        ChangeKind.PINGED,
        {"v": 1},
        {"v": 1},
    )
    assert (deleted.kind, deleted.old_value, deleted.new_value) == (
        ChangeKind.DELETED,
        {"v": 1},
        None,
    )


async def test_a_subscriber_mutating_an_event_cannot_corrupt_the_state():
    async def vandal(event):
        event.new_value["list"].append("vandal")

    async with open_state({}) as state:
        await state.subscribe("", vandal, name="vandal")
        receipt = await state.send(Set("a", {"list": [1]}))
        await receipt.acks(timeout=5)
        assert await state.get("a") == {"list": [1]}


async def test_handler_failures_become_failed_acks_and_the_subscriber_keeps_running():
    calls = []

    def flaky(event):  # a sync handler
        calls.append(event.new_value)
        if event.new_value == "boom":
            raise RuntimeError("kaput")
        if event.new_value == "weird":
            return "not a code"
        if event.new_value == "no":
            return RAS.FAILURE
        if event.new_value == 42:
            return 42
        return None

    async with open_state({}) as state:
        await state.subscribe("x", flaky, name="flaky")
        await state.subscribe("x", Recorder(), name="fine")
        reports = {}
        for value in ["ok", "boom", "weird", "no", 42, "ok again"]:
            receipt = await state.send(Set("x", value))
            reports[value] = await receipt.acks(timeout=5)
    assert calls == ["ok", "boom", "weird", "no", 42, "ok again"]
    assert reports["ok"].ok
    assert reports["ok again"].ok
    boom = reports["boom"]
    assert boom.result is ResultCode.SUB_FAILED
    assert [(a.subscriber, a.ras, a.message) for a in boom.failed] == [
        ("flaky", RAS.ERROR, "RuntimeError: kaput")
    ]
    assert reports["weird"].failed[0].ras == RAS.INVALID
    assert reports["no"].failed[0].ras == RAS.FAILURE
    assert (
        reports["42"].failed[0].ras == 42
        if "42" in reports
        else reports[42].failed[0].ras == 42
    )
    assert all(len(r.acks) == 2 for r in reports.values())


class _Awaitable:
    """An awaitable that is not a coroutine (as a Future or a Task is)."""

    def __init__(self, value):
        self.value = value

    def __await__(self):
        yield from anyio.lowlevel.checkpoint().__await__()
        return self.value


@pytest.mark.parametrize("handler_timeout", [None, 30.0])
@pytest.mark.parametrize(
    ("returned", "ras", "message"),
    [
        (None, RAS.SUCCESS, ""),
        (1, RAS.SUCCESS, ""),
        (True, RAS.SUCCESS, ""),
        (RAS.SUCCESS, RAS.SUCCESS, ""),
        (RAS.FAILURE, RAS.FAILURE, ""),
        (7, 7, ""),
        (False, 0, ""),
        (
            "yes",
            RAS.INVALID,
            "handler returned 'yes'; expected an int RAS code, (code, message) or None",
        ),
        (
            1.0,
            RAS.INVALID,
            "handler returned 1.0; expected an int RAS code, (code, message) or None",
        ),
    ],
)
@pytest.mark.parametrize("kind", ["sync", "async", "awaitable"])
async def test_handler_results_become_the_same_ras_code_on_every_call_path(
    kind, returned, ras, message, handler_timeout
):
    """Sync, async and other awaitables; with and without a handler timeout."""

    async def coroutine():
        return returned

    def handler(event):
        if kind == "sync":
            return returned
        if kind == "async":
            return coroutine()
        return _Awaitable(returned)

    async with open_state({}) as state:
        await state.subscribe("", handler, name="h", handler_timeout=handler_timeout)
        report = await (await state.send(Set("x", 1))).acks(timeout=5)
    [ack] = report.acks
    assert (ack.ras, ack.message) == (ras, message)


async def test_rejected_action_raises_and_changes_and_emits_nothing():
    recorder = Recorder()
    async with open_state({"n": 1}) as state:
        await state.subscribe("", recorder, name="r")
        with pytest.raises(PathConflictError):
            await state.send(Set("n.x", 2))
        with pytest.raises(ActionRejectedError):
            await state.send(Transaction([Set("a", 1), Set("n.x", 2)]))
        assert await state.get() == {"n": 1}
        assert state.revision == 0
        stats = state.statistics()
        assert (stats.applied, stats.rejected) == (0, 2)
    assert recorder.events == []


async def test_equal_write_emits_nothing():
    recorder = Recorder()
    async with open_state({"a": 1}) as state:
        await state.subscribe("", recorder, name="r")
        receipt = await state.send(Set("a", 1))
        assert not receipt.changed
        assert receipt.subscribers == ()
        assert (await receipt.acks()).ok
        await state.send(Set("a", 1, eq=False))
    assert len(recorder.events) == 1


async def test_subscriber_names_are_unique():
    async def handler(event):
        return None

    async with open_state({}) as state:
        a = await state.subscribe("", handler)
        b = await state.subscribe("", handler)
        assert a.name != b.name
        await state.subscribe("", handler, name="x")
        with pytest.raises(
            DuplicateNameError, match="a subscriber named 'x' already exists"
        ):
            await state.subscribe("", handler, name="x")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mailbox_size": 0}, "mailbox_size"),
        ({"overflow": "drop"}, "overflow"),
        ({"block_timeout": -1}, "block_timeout"),
        ({"handler_timeout": float("nan")}, "handler_timeout"),
        ({"name": ""}, "name"),
    ],
)
async def test_bad_subscribe_options(kwargs, field):
    async with open_state({}) as state:
        with pytest.raises(InvalidActionError) as info:
            await state.subscribe("", Recorder(), **kwargs)
        assert info.value.field == field
        with pytest.raises(InvalidActionError):
            await state.send("Set a 1")  # type: ignore[arg-type]


async def test_unsubscribe_stops_delivery_and_reports_queued_as_missing():
    gate = Gate()
    async with open_state({}) as state:
        sub = await state.subscribe("", gate, name="gate")
        first = await state.send(Set("a", 1))
        await anyio.wait_all_tasks_blocked()
        assert gate.entered == 1
        second = await state.send(Set("a", 2))  # queued behind the blocked handler
        await sub.unsubscribe()
        await sub.unsubscribe()  # idempotent
        third = await state.send(Set("a", 3))
        assert third.subscribers == ()
        assert (await first.acks()).missing == ("gate",)
        assert (await second.acks()).missing == ("gate",)
        assert state.statistics().subscribers == 0


async def test_stalled_subscriber_with_drop_policy_stalls_nobody():
    gate, fast = Gate(), Recorder()
    async with open_state({}) as state:
        slow = await state.subscribe(
            "", gate, name="slow", overflow=Overflow.DROP, mailbox_size=4
        )
        await state.subscribe("", fast, name="fast")
        reports = []
        for i in range(100):
            receipt = await state.send(Set("n", i))
            reports.append(receipt)
        # The dropped ones are final at once: no timeout needed to learn it.
        dropped_reports = [await r.acks() for r in reports[5:]]
        assert all(r.missing == ("slow",) for r in dropped_reports)
        assert all(r.result is ResultCode.MISSING_RESPONSE for r in dropped_reports)
        held = [await r.acks(timeout=0) for r in reports[:5]]
        assert all(r.missing == ("slow",) and len(r.acks) == 1 for r in held)
        stats = slow.statistics()
        assert stats.queued == 4
        assert stats.peak == 4
        assert stats.dropped == 100 - 1 - 4
        assert len(fast.events) == 100
        gate.opened.set()
        await anyio.wait_all_tasks_blocked()
        # after catching up: the 5 it held, then one Resync for the gap
        resync = gate.events[-1]
        assert isinstance(resync, Resync)
        assert (resync.dropped, resync.first_revision, resync.last_revision) == (
            95,
            6,
            100,
        )
        assert [e.revision for e in gate.events[:-1]] == [1, 2, 3, 4, 5]
        # and it is live again afterwards
        await (await state.send(Set("n", "after"))).acks()
        assert gate.events[-1].new_value == "after"


async def test_overflowed_subscriber_keeps_dropping_until_it_takes_the_resync():
    """No event newer than the gap may arrive before the Resync."""
    gate = Gate()
    async with open_state({}) as state:
        await state.subscribe(
            "", gate, name="slow", overflow=Overflow.DROP, mailbox_size=1
        )
        for i in range(5):
            await state.send(Set("n", i))
        gate.opened.set()
        for i in range(5, 10):
            await state.send(Set("n", i))
        await anyio.wait_all_tasks_blocked()
    kinds = [type(e).__name__ for e in gate.events]
    revisions = [getattr(e, "revision", None) for e in gate.events]
    resync_at = kinds.index("Resync")
    assert all(
        r is not None and r < gate.events[resync_at].first_revision
        for r in revisions[:resync_at]
    )
    assert all(
        r > gate.events[resync_at].last_revision
        for r in revisions[resync_at + 1 :]
        if r is not None
    )


async def test_block_policy_is_backpressure_and_loses_nothing_if_it_keeps_up():
    seen = []

    async def slowish(event):
        seen.append(event.new_value)
        await anyio.lowlevel.checkpoint()

    async with open_state({}) as state:
        sub = await state.subscribe(
            "", slowish, name="s", mailbox_size=2, block_timeout=30
        )
        for i in range(200):
            await state.send(Set("n", i))
    assert seen == list(range(200))
    assert sub.statistics().dropped == 0
    assert sub.statistics().peak <= 2


@pytest.mark.parametrize(
    ("work", "deliveries"),
    [(0.0, 4 * _YIELD_EVERY), (0.001, 40)],
    ids=["quick-handler", "1ms-handler"],
)
async def test_a_busy_subscriber_still_lets_other_tasks_run(work, deliveries):
    """A handler that never awaits is interrupted every _YIELD_EVERY deliveries,
    or every _TIME_SLICE seconds of handling, whichever comes first."""
    ticks = 0
    seen_at_tick = []
    done = anyio.Event()

    def busy(event):  # sync: never yields by itself; burns *work* s of CPU
        seen_at_tick.append(ticks)
        end = time.perf_counter() + work
        while time.perf_counter() < end:
            pass

    async def ticker():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await anyio.lowlevel.checkpoint()

    with anyio.fail_after(10):
        async with open_state({}, mailbox_size=deliveries) as state:
            await state.subscribe("", busy, name="busy", mailbox_size=deliveries)
            async with anyio.create_task_group() as tg:
                tg.start_soon(ticker)
                async with anyio.create_task_group() as senders:
                    for i in range(deliveries):  # one batch, handed over at once
                        senders.start_soon(state.send, Set(f"k{i}", i))
                await (await state.send(Set("last", 1))).acks()
                done.set()
    runs = [seen_at_tick.count(t) for t in set(seen_at_tick)]
    assert len(seen_at_tick) == deliveries + 1
    per_slice = math.ceil(_TIME_SLICE / work) if work else _YIELD_EVERY
    # trio may run the two tasks in either order within a scheduler batch
    assert max(runs) <= 2 * min(per_slice, _YIELD_EVERY)


async def test_full_mailbox_gives_backpressure_and_send_nowait_refuses():
    gate = Gate()
    async with open_state({}, mailbox_size=2) as state:
        await state.subscribe("", gate, name="g", mailbox_size=1, block_timeout=60)
        results = []

        async def producer(p):
            for i in range(5):
                await state.send(Set(f"p{p}", i))
                results.append((p, i))

        async with anyio.create_task_group() as tg:
            for p in range(10):
                tg.start_soon(producer, p)
            await anyio.wait_all_tasks_blocked()
            stats = state.statistics()
            assert stats.mailbox_used <= stats.mailbox_size == 2
            assert stats.senders_waiting > 0
            with pytest.raises(anyio.WouldBlock):
                await state.send_nowait(Set("x", 1))
            gate.opened.set()
        assert len(results) == 50
        assert sorted(await state.get("", {})) == sorted(f"p{p}" for p in range(10))
        assert [await state.get(f"p{p}") for p in range(10)] == [4] * 10


async def test_cancelled_acks_wait_loses_nothing_for_other_waiters():
    gate = Gate()
    async with open_state({}) as state:
        await state.subscribe("", gate, name="g")
        receipt = await state.send(Set("a", 1))
        reports = []

        async def waiter():
            reports.append(await receipt.acks())

        async with anyio.create_task_group() as tg:
            with anyio.CancelScope() as scope:
                tg.start_soon(waiter)
                tg.start_soon(waiter)
                await anyio.wait_all_tasks_blocked()
                scope.cancel()
            async with anyio.create_task_group() as inner:
                inner.start_soon(waiter)
                await anyio.wait_all_tasks_blocked()
                inner.cancel_scope.cancel()  # cancel one waiter mid-wait
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            gate.opened.set()
        assert [r.ok for r in reports] == [True, True, True]
        assert (await receipt.acks()).ok


async def test_cancelled_before_the_mailbox_accepts_is_not_applied():
    async with open_state({}) as state:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await state.send(Set("a", 1))
        assert await state.get("a") is None
        assert state.revision == 0


async def test_cancellation_at_each_await_point_of_send():
    """Point 1: parked, waiting for mailbox room -> not applied. Point 2: in
    the mailbox, not yet taken by the actor -> not applied. Point 3: taken,
    the sender still waiting for its answer -> applied whole (see
    test_cancelled_after_the_actor_took_it_is_applied_whole). Nothing is ever
    half-applied."""
    gate = Gate()
    async with open_state({}, mailbox_size=1) as state:
        await state.subscribe("", gate, name="g", mailbox_size=1, block_timeout=3600)
        # A: in the handler; B: in the subscriber's mailbox; C: the actor blocks
        # delivering it. The state actor is now stuck in the BLOCK policy.
        for name in "ABC":
            await state.send(Transaction([Set(f"{name}.x", 1), Set(f"{name}.y", 1)]))
        await anyio.wait_all_tasks_blocked()
        async with anyio.create_task_group() as tg:
            d_scope, e_scope = anyio.CancelScope(), anyio.CancelScope()

            async def send_in(scope, name):
                with scope:
                    await state.send(
                        Transaction([Set(f"{name}.x", 1), Set(f"{name}.y", 1)])
                    )

            tg.start_soon(send_in, d_scope, "D")  # fills the actor's mailbox (1)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(send_in, e_scope, "E")  # waits for mailbox room
            await anyio.wait_all_tasks_blocked()
            assert state.statistics().senders_waiting == 1
            e_scope.cancel()  # point 1
            d_scope.cancel()  # point 2
            await anyio.wait_all_tasks_blocked()
            assert state.statistics().senders_waiting == 0  # E withdrew
            assert state.statistics().mailbox_used == 1  # D stays, abandoned
            gate.opened.set()
        await (await state.send(Ping(""))).acks()
        tree = await state.get()
        assert set(tree) == {"A", "B", "C"}
        assert all(tree[k] == {"x": 1, "y": 1} for k in tree)


async def test_many_parked_senders_cancelled_at_once_apply_nothing():
    gate = Gate()
    async with open_state({}, mailbox_size=1) as state:
        await state.subscribe("", gate, name="g", mailbox_size=1, block_timeout=3600)
        for name in "ABC":  # the actor is now stuck delivering C
            await state.send(Set(name, 1))
        await anyio.wait_all_tasks_blocked()
        async with anyio.create_task_group() as tg:
            for i in range(2_000):
                tg.start_soon(state.send, Set(f"x{i}", i))
            await anyio.wait_all_tasks_blocked()
            assert state.statistics().mailbox_used == 1
            assert state.statistics().senders_waiting == 1_999
            tg.cancel_scope.cancel()
        assert state.statistics().senders_waiting == 0
        gate.opened.set()
        await (await state.send(Ping(""))).acks()
        assert sorted(await state.get()) == ["A", "B", "C"]


async def test_parked_senders_enter_in_arrival_order():
    """Senders beyond the mailbox park; they are applied in the order they came."""
    gate = Gate()
    async with open_state({}, mailbox_size=2) as state:
        await state.subscribe("", gate, name="g", mailbox_size=1, block_timeout=3600)
        for name in "ABC":  # as above: the actor is now stuck delivering C
            await state.send(Set(name, 1))
        await anyio.wait_all_tasks_blocked()
        order = []

        async def send(i):
            receipt = await state.send(Set("n", i))
            order.append((i, receipt.revision))

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(send, i)
                await anyio.wait_all_tasks_blocked()  # arrival order is i
            assert state.statistics().mailbox_used == 2
            assert state.statistics().senders_waiting == 8
            gate.opened.set()
        assert sorted(order, key=lambda p: p[1]) == [(i, 4 + i) for i in range(10)]
        assert await state.get("n") == 9


@pytest.mark.parametrize("slow_subscriber", [False, True])
async def test_cancelled_while_the_actor_is_busy_elsewhere_is_not_applied(
    slow_subscriber,
):
    """Already cancelled when calling send: not applied, whoever runs first
    (the actor may be ready to run already, or blocked delivering events)."""

    async def slow(event):
        for _ in range(3):
            await anyio.lowlevel.checkpoint()

    async with open_state({}, mailbox_size=8) as state:
        if slow_subscriber:
            await state.subscribe("", slow, name="slow", mailbox_size=1)
        async with anyio.create_task_group() as tg:

            async def cancelled_sender(i):
                with anyio.CancelScope() as scope:
                    scope.cancel()
                    await state.send(Set(f"c{i}", 1))
                assert scope.cancelled_caught

            async def plain_sender(i):
                await state.send(Set(f"p{i}", 1))

            for i in range(50):
                tg.start_soon(plain_sender, i)
                tg.start_soon(cancelled_sender, i)
        tree = await state.get()
        assert sorted(tree) == sorted(f"p{i}" for i in range(50))
        assert state.revision == 50


async def test_random_cancellations_never_half_apply(anyio_backend):
    rng = random.Random(1234)
    violations = []

    async def checker(event):
        pair = event.new_value
        if isinstance(pair, dict) and pair.get("x") != pair.get("y"):
            violations.append(pair)

    async with open_state({"p": {"x": 0, "y": 0}}, mailbox_size=4) as state:
        await state.subscribe("p", checker, name="checker", mailbox_size=10_000)
        cancelled = 0

        async def sender(i):
            nonlocal cancelled
            with anyio.CancelScope() as scope:
                for _ in range(rng.randrange(4)):
                    await anyio.lowlevel.checkpoint()
                scope.cancel() if rng.random() < 0.5 else None
                await state.send(Transaction([Set("p.x", i), Set("p.y", i)]))
            cancelled += scope.cancelled_caught

        async with anyio.create_task_group() as tg:
            for i in range(1, 300):
                tg.start_soon(sender, i)
        final = await state.get("p")
    assert final["x"] == final["y"]
    assert violations == []
    assert cancelled > 50


async def test_stop_applies_what_came_before_and_refuses_what_comes_after():
    recorder = Recorder()
    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor().run)
        await state.subscribe("", recorder, name="r")
        for i in range(10):
            await state.send(Set("n", i))
        await state.stop()
        await state.stop()  # idempotent
        assert state.closed
        with pytest.raises(StateClosedError):
            await state.send(Set("n", 99))
        with pytest.raises(StateClosedError):
            await state.subscribe("", recorder)
        assert await state.get("n") == 9
    # the subscriber drained its mailbox before the actor ended
    assert [e.new_value for e in recorder.events] == list(range(10))


async def test_stop_gives_hung_subscribers_a_bounded_time():
    gate = Gate()
    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor().run)
        await state.subscribe("", gate, name="hung")
        receipt = await state.send(Set("a", 1))
        await state.stop(timeout=0)
        report = await receipt.acks()
        assert report.missing == ("hung",)


async def test_open_state_cancels_the_actor_when_the_block_raises():
    with pytest.raises(RuntimeError, match="user error"):  # noqa: PT012 - the block is the test
        async with open_state({}) as state:
            await state.subscribe("", Gate(), name="hung")
            await state.send(Set("a", 1))
            raise RuntimeError("user error")


async def test_actor_crash_is_reported_as_broken(monkeypatch):
    """Senders in other task groups get StateBrokenError, none hangs."""
    from stateward.actors import state as state_module

    original = state_module._Core.process

    def process(self, request):
        if getattr(request.action, "path", None) == "crash":
            raise ZeroDivisionError("simulated bug")
        original(self, request)

    monkeypatch.setattr(state_module._Core, "process", process)
    errors = []

    async def sender(state, path):
        try:
            await state.send(Set(path, 1))
        except StateBrokenError as exc:
            errors.append((path, str(exc)))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as outer:
            with pytest.raises(BaseExceptionGroup) as info:  # noqa: PT012
                async with anyio.create_task_group() as tg:
                    state = await tg.start(StateActor(mailbox_size=8).run)
                    await state.send(Set("ok", 1))
                    for path in ("a", "b", "crash", "c", "d"):
                        outer.start_soon(sender, state, path)
                    await anyio.sleep_forever()
            assert info.group_contains(ZeroDivisionError)
    failed = {path for path, _ in errors}
    assert "crash" in failed
    for path in ("a", "b", "c", "d"):  # applied, or told it was not: never both
        assert (path in failed) != (state.get_nowait(path) == 1)
    assert all("crashed: ZeroDivisionError('simulated bug')" in t for _, t in errors)
    with pytest.raises(StateBrokenError, match="crashed"):
        await state.send(Set("x", 1))
    assert await state.get("ok") == 1


async def test_statistics_and_repr():
    async with open_state({}, mailbox_size=16) as state:
        sub = await state.subscribe("a", Recorder(), name="r")
        await (await state.send(Set("a", 1))).acks()
        stats = state.statistics()
        assert (stats.revision, stats.subscribers, stats.mailbox_size) == (1, 1, 16)
        assert repr(state) == "<StateHandle rev=1 subscribers=1 mailbox=0/16>"
        assert sub.statistics().delivered == 1
        assert sub.statistics().acks_ok == 1
        assert repr(sub) == "<Subscription 'r' pattern='a' mailbox=0/64 dropped=0>"
        assert state.subscriber_statistics()["r"].delivered == 1
        receipt = await state.send(Set("a", 2))
        assert repr(receipt) == "<Receipt rev=2 changed=True subscribers=['r']>"


async def test_handles_have_no_public_constructor():
    from stateward import Reaction, Reader, Receipt, StateHandle, Subscription

    for cls in (Reaction, Reader, Receipt, StateHandle, Subscription):
        with pytest.raises(TypeError, match="has no public constructor"):
            cls()
