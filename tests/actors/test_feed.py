"""The revision feed and time travel: etcd's watch guarantees, named.

Ordered, unique, atomic per action, resumable from any kept revision, reliable
(no gap between the replay and the live feed), Compacted at the boundary; and
at_revision() equal to the tree as it was.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest
import trio
import trio.testing

from stateward import (
    Action,
    ActionRejectedError,
    CompactedError,
    Delete,
    InvalidActionError,
    PersistenceConfig,
    Progress,
    Set,
    StateActor,
    StateChanged,
    Transaction,
    open_state,
)
from stateward.actors._files import Files

from .feedlib import (
    INITIAL,
    Recorder,
    actions,
    all_acked,
    collect,
    open_files_feed,
    resume_routed_lazily,
    send_all,
    writing,
)

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


async def _run(state: Any, todo: list[Action]) -> list[Any]:
    """Send *todo* one by one; return the tree after each revision (index)."""
    trees = [await state.get()]
    for action in todo:
        try:
            receipt = await state.send(action)
        except ActionRejectedError:
            continue
        if receipt.changed:
            assert receipt.revision == len(trees)
            trees.append(state.get_nowait())
    return trees


@pytest.mark.parametrize("pattern", ["**", "d.*", "l", "m.**"])
async def test_resume_from_every_revision_equals_the_live_feed(pattern: str) -> None:
    async with open_state(INITIAL) as state:
        live = Recorder()
        await state.subscribe(pattern, live)
        await all_acked(await send_all(state, actions(1, 150)))  # live has all
        last = state.revision
        assert last > 100
        for since in range(last + 1):
            expected = [e for e in live.got if e[0] > since]
            replayed = await collect(state, pattern, since, len(expected))
            # No gap, no duplicate, same order, same content as live.
            assert replayed == expected, since


async def test_replay_then_live_has_no_gap_under_concurrent_writes() -> None:
    async with open_state({}) as state:
        for n in range(200):
            await state.send(Set(f"k{n % 7}", n))
        seen = Recorder(key=lambda e: e.revision)
        stop = anyio.Event()

        async def writer(w: int) -> None:
            n = 0
            while not stop.is_set():
                await state.send(Set(f"w{w}", n))
                n += 1

        async with anyio.create_task_group() as tg:
            for w in range(3):
                tg.start_soon(writer, w)
            await anyio.lowlevel.checkpoint()
            since = 50
            await state.subscribe("**", seen, from_revision=since)
            await seen.wait_for(400)
            stop.set()
        # Every revision after `since`, once each, in order (one event each).
        assert seen.got == list(range(since + 1, since + 1 + len(seen.got)))


async def test_a_transaction_replays_as_one_delivery_acked_once() -> None:
    async with open_state({}) as state:
        await state.send(Transaction([Set("a", 1), Set("b", 2), Set("c", 3)]))
        calls: list[tuple[int, str]] = []
        sub = await state.subscribe(
            "**", lambda e: calls.append((e.revision, e.path)) or 1, from_revision=0
        )
        receipt = await state.send(Transaction([Set("a", 9), Delete("b")]))
        assert (await receipt.acks(timeout=5)).ok
        assert calls == [(1, "a"), (1, "b"), (1, "c"), (2, "a"), (2, "b")]
        stats = sub.statistics()
        assert (stats.delivered, stats.acks_ok) == (2, 2)  # one per revision


async def test_compacted_at_the_boundary_and_resume_after_it() -> None:
    async with open_state({}, history=10) as state:
        for n in range(30):
            await state.send(Set("n", n))
        with pytest.raises(CompactedError) as caught:
            await state.subscribe("n", lambda e: 1, from_revision=19)
        assert (caught.value.requested, caught.value.oldest) == (19, 20)
        got = await collect(state, "n", 20, 10)
        assert [e[0] for e in got] == list(range(21, 31))
        assert await collect(state, "n", 30, 0) == []
        with pytest.raises(InvalidActionError, match="ahead"):
            await state.subscribe("n", lambda e: 1, from_revision=31)
        with pytest.raises(InvalidActionError):
            await state.subscribe("n", lambda e: 1, from_revision=-1)
        with pytest.raises(CompactedError):
            await state.at_revision(5)
        assert len(state._core.history.entries) == 10  # bounded
    async with open_state({}, history=0) as state:
        await state.send(Set("n", 1))
        with pytest.raises(CompactedError):
            await state.subscribe("n", lambda e: 1, from_revision=0)
        assert await collect(state, "n", 1, 0) == []  # now: always allowed


async def test_at_revision_equals_the_tree_as_it_was() -> None:
    async with open_state(INITIAL) as state:
        trees = await _run(state, actions(2, 300))
        for revision, tree in enumerate(trees):
            assert await state.at_revision(revision) == tree, revision
        with pytest.raises(InvalidActionError):
            await state.at_revision(len(trees))


async def test_at_revision_undoes_a_slice_per_turn_while_writes_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Undoing a large ring at once stopped the state (0.34 s for 100,000
    # revisions): it is undone a slice at a time, with a turn of the loop
    # between, on rows taken before; writes made meanwhile (the ring moving
    # on) change nothing of the tree as it was.
    from stateward.actors import _history

    monkeypatch.setattr(_history, "UNDO_SLICE", 7)
    slices = 0
    real = _history.undo

    def counted(root: Any, newer: Any) -> Any:
        nonlocal slices
        slices += 1
        return real(root, newer)

    monkeypatch.setattr(_history, "undo", counted)
    async with open_state(INITIAL, history=300) as state:
        trees = await _run(state, actions(2, 300))
        last = len(trees) - 1
        async with writing(state) as writes:
            for revision in (0, 1, last // 2, last - 1):
                slices = 0
                before = writes.count
                assert await state.at_revision(revision) == trees[revision], revision
                assert slices >= -(-(last - revision) // 7)  # a slice at a time
                if last - revision > 70:
                    assert writes.count > before  # it ran between slices


async def test_at_revision_of_a_persisted_state_reads_the_files(tmp_path: Path) -> None:
    async with open_files_feed(tmp_path) as state:
        trees = await _run(state, actions(3, 120))
        for revision in range(0, len(trees), 7):
            assert await state.at_revision(revision) == trees[revision]


class _GatedFiles(Files):
    """Real files whose fsync waits while the gate is closed."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()

    def fsync(self, fd: int) -> None:
        self.gate.wait(30)
        super().fsync(fd)


async def test_persisted_replay_never_runs_ahead_of_the_journal(
    tmp_path: Path,
) -> None:
    files = _GatedFiles()
    config = PersistenceConfig(str(tmp_path), files=files)
    seen = Recorder(key=lambda e: e.revision)
    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor(persistence=config).run)
        for n in range(50):
            await state.send(Set("n", n))
        files.gate.clear()  # the next commits stay in flight
        for w in range(8):
            tg.start_soon(state.send, Set(f"w{w}", w))
        await anyio.wait_all_tasks_blocked()  # all 8 applied, commit held
        assert state.revision == 58
        assert state.statistics().durable_revision == 50
        await state.subscribe("**", seen, from_revision=10)
        await seen.wait_for(40)
        for _ in range(50):
            await anyio.lowlevel.checkpoint()
        assert seen.got == list(range(11, 51))  # nothing a crash could still undo
        files.gate.set()
        await seen.wait_for(48)
        assert seen.got == list(range(11, 59))
        await state.stop()


async def test_watch_replays_then_follows_and_unsubscribes_on_exit() -> None:
    async with open_state({}) as state:
        for n in range(5):
            await state.send(Set("n", n))
        got: list[int] = []
        async with anyio.create_task_group() as tg:

            async def more() -> None:
                for n in range(5, 10):
                    await state.send(Set("n", n))

            tg.start_soon(more)
            watch = state.watch("n", from_revision=2)
            async for event in watch:
                assert isinstance(event, StateChanged)
                got.append(event.new_value)
                if len(got) == 7:
                    break
            await watch.aclose()
        assert got == [2, 3, 4, 5, 6, 7, 8]
        assert state.subscriber_statistics() == {}


@pytest.mark.parametrize(
    "anyio_backend",
    [("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})],
)
async def test_an_idle_watch_learns_the_revision_by_progress_events() -> None:
    async with open_state({}) as state:
        await state.send(Set("other", 1))
        await state.send(Set("other", 2))
        watch = state.watch("mine", progress=5)
        events: list[Any] = []
        async for event in watch:
            events.append((trio.current_time(), event))
            if len(events) == 2:
                break
        await watch.aclose()
        start = events[0][0] - 5
        assert events == [
            (start + 5, Progress(2)),
            (start + 10, Progress(2)),
        ]


async def test_get_with_write_default_writes_once_and_returns_the_winner() -> None:
    async with open_state({"a": 1}) as state:
        seen = Recorder(key=lambda e: (e.path, e.new_value))
        await state.subscribe("**", seen)
        assert await state.get("a", 5, write_default=True) == 1  # present: no write
        assert await state.get("b.c", {"x": 1}, write_default=True) == {"x": 1}
        assert await state.get("b.c", 7, write_default=True) == {"x": 1}
        assert state.revision == 1
        results: list[Any] = []

        async def racer(n: int) -> None:
            results.append(await state.get("race", n, write_default=True))

        async with anyio.create_task_group() as tg:
            for n in range(10):
                tg.start_soon(racer, n)
        assert len(set(map(repr, results))) == 1  # all see the one that won
        assert await state.get("race") == results[0]
        assert state.revision == 2
        with pytest.raises(ActionRejectedError):
            await state.get("a.x", 1, write_default=True)  # a is a scalar
        await seen.wait_for(2)
        assert seen.got == [("b.c", {"x": 1}), ("race", results[0])]


async def test_two_watches_of_one_pattern_run_side_by_side() -> None:
    async with open_state({}) as state:
        await state.send(Set("n", 1))
        first = state.watch("n", from_revision=0)
        second = state.watch("n", from_revision=0)
        assert (await first.__anext__()).new_value == 1  # type: ignore[union-attr]
        assert (await second.__anext__()).new_value == 1  # type: ignore[union-attr]
        assert sorted(state.subscriber_statistics()) == ["watch n", "watch n#2"]
        await first.aclose()
        await second.aclose()
        assert state.subscriber_statistics() == {}


async def test_the_rings_history_is_routed_as_the_subscriber_takes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A large ring routed at once stopped the state's loop (0.9 s for
    # 100,000 revisions): what is committed is routed one delivery at a
    # time, in the subscriber's own task.
    async with open_state(INITIAL, history=1_000) as state:
        await resume_routed_lazily(state, monkeypatch)


async def test_a_feed_window_from_the_ring_is_made_a_slice_per_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The remote feed's window (up to feed_size revisions) made at once from
    # the ring stopped the state (a third of a second for 100,000): it is
    # made a slice per turn of the loop, from rows taken before, so writes
    # going on meanwhile change nothing of it.
    from stateward.actors import _handle_feed

    monkeypatch.setattr(_handle_feed, "_FEED_SLICE", 10)
    async with open_state({}, history=500) as state:
        for i in range(1, 301):
            await state.send(Set(f"k{i % 7}", i))
        async with writing(state) as writes:
            before = writes.count
            entries = await state._changes_after(50, 250)
            assert writes.count > before  # it ran between slices
    assert [e.revision for e in entries] == list(range(51, 251))
    assert [e.changes[0].new for e in entries] == list(range(51, 251))
