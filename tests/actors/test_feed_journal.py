"""The revision feed beyond the history ring: rebuilt from snapshot + journal.

A persisted state resumes a feed from any revision its files still reach,
across restarts, with the same events (ids, sources, payloads, pings and
derived values included) as a subscriber that was there all along.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

from stateward import (
    CompactedError,
    Set,
    open_state,
)
from stateward.actors import _handle_feed, _snapshots

from .feedlib import (
    Recorder,
    actions,
    all_acked,
    collect,
    open_files_feed,
    resume_routed_lazily,
    send_all,
)

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


async def test_resume_beyond_the_ring_and_across_a_restart(tmp_path: Path) -> None:
    live = Recorder()
    async with open_files_feed(tmp_path, snapshot_every=25) as state:
        await state.subscribe("**", live)
        await state.derive("count", "d", lambda d: len(d or {}))
        await all_acked(await send_all(state, actions(4, 120)))  # live has all
        last = state.revision
        for since in range(0, last + 1, 3):
            expected = [e for e in live.got if e[0] > since]
            assert await collect(state, "**", since, len(expected)) == expected
    async with open_files_feed(tmp_path) as state:  # reopened
        assert state.revision == last
        for since in range(0, last + 1, 7):
            expected = [e for e in live.got if e[0] > since]
            assert await collect(state, "**", since, len(expected)) == expected


async def test_compacted_where_the_files_no_longer_reach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Snapshots every 10 revisions exactly (serialised in place, not by a
    # child that may still be busy at the next one), so the files reach back
    # a known way.
    monkeypatch.setattr(_snapshots, "can_spawn", lambda: False)
    monkeypatch.setattr(_snapshots, "fork_serialise", lambda root: None)
    async with open_state(
        {}, state_dir=tmp_path, history=5, snapshot_every=10, keep_snapshots=2
    ) as state:
        for n in range(60):
            await state.send(Set("n", n))
        # The last snapshot was taken before the last send was answered; its
        # file and the retention after it are written in the background. Once
        # they are, the files reach back where they will stay. (Under load,
        # this test saw retention move the start between its two questions.)
        await state._core.persister.snapshots.idle.wait()
        with pytest.raises(CompactedError) as caught:
            await state.subscribe("n", lambda e: 1, from_revision=3)
        oldest = caught.value.oldest
        assert 3 < oldest <= 55
        got = await collect(state, "n", oldest, 60 - oldest)
        assert [e[0] for e in got] == list(range(oldest + 1, 61))


async def test_a_resume_the_state_outruns_reads_the_snapshot_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The state moves past its ring while the files are read: the next round
    # goes on from the tree the first one rebuilt (a large snapshot decoded
    # once, not once a round), whose tree is then freed by the reaper.
    import threading

    import anyio

    from stateward.actors._reaper import Reaper
    from stateward.actors.persistence import _replay

    real_tree_before = _replay._tree_before
    reading, go = threading.Event(), threading.Event()
    decoded: list[int] = []

    def tree_before(*args: object) -> object:
        decoded.append(1)
        reading.set()
        go.wait(10)
        return real_tree_before(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_replay, "_tree_before", tree_before)
    held: list[object] = []
    real_hold = Reaper.hold

    def hold(self: Reaper, value: object) -> None:
        held.append(value)
        real_hold(self, value)  # type: ignore[arg-type]

    monkeypatch.setattr(Reaper, "hold", hold)
    live = Recorder()
    async with open_files_feed(tmp_path, snapshot_every=25) as state:
        await state.subscribe("**", live)
        await all_acked(await send_all(state, actions(5, 60)))
        got: list[object] = []
        async with anyio.create_task_group() as tg:

            async def resume() -> None:
                got.extend(await collect(state, "**", 3, len(live.got) - 3 + 30))

            tg.start_soon(resume)
            await anyio.to_thread.run_sync(reading.wait, 10)
            # 30 more: far past the ring of 5, while the files are read.
            await all_acked(
                await send_all(state, [Set(f"more.m{i}", i) for i in range(30)])
            )
            go.set()
        assert got == [e for e in live.got if e[0] > 3]
    assert decoded == [1]
    assert len(held) == 1
    assert isinstance(held[0], dict)


PATTERNS = ["d.k1.v", "d.*.v", "d.k2", "l.1", "m.*.b.c", "t", "n.**", "*", "reset"]


async def test_a_resume_from_the_files_keeps_what_may_reach_the_pattern_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rebuilt from the files, a resumed subscriber keeps only the revisions
    # whose changes may reach it (the rest are let go as they are rebuilt),
    # and gets exactly what one of its pattern present all along got: the
    # writes at its path, below it and above it (the root replaced).
    kept: list[int] = []
    real = _handle_feed.replay_files

    def counted(*args: Any, **kwargs: Any) -> Any:
        tree, entries = real(*args, **kwargs)
        kept.append(len(entries))
        return tree, entries

    monkeypatch.setattr(_handle_feed, "replay_files", counted)
    live = {pattern: Recorder() for pattern in PATTERNS}
    async with open_files_feed(tmp_path, snapshot_every=25) as state:
        for pattern, recorder in live.items():
            await state.subscribe(pattern, recorder)
        await all_acked(await send_all(state, actions(7, 150)))
        last = state.revision
        for pattern, recorder in live.items():
            for since in (0, 31, 77, last - 10):
                kept.clear()
                expected = [e for e in recorder.got if e[0] > since]
                got = await collect(state, pattern, since, len(expected))
                assert got == expected, (pattern, since)
                assert kept, "not rebuilt from the files"
                if pattern == "d.k1.v" and since == 0:
                    assert sum(kept) < last // 2  # (not every revision)


async def test_the_history_from_the_files_is_routed_as_the_subscriber_takes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Routing a long history at once stopped the state's loop (1.4 s for
    # 200,000 revisions): what comes from the files (the ring holds 5) is
    # routed one delivery at a time, in the subscriber's own task.
    async with open_files_feed(tmp_path, snapshot_every=25) as state:
        await resume_routed_lazily(state, monkeypatch)


async def test_a_long_history_from_the_files_is_frozen_as_it_piles_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The revisions kept for a resumed subscriber pile up in a worker thread;
    # a state that freezes the garbage collector freezes them every
    # FREEZE_KEPT, so full collections (which stop every thread: up to
    # 0.2 s at 200,000 revisions) do not walk them again and again.
    from stateward.actors._gc_freeze import Freezer
    from stateward.actors.persistence import _replay

    monkeypatch.setattr(_replay, "FREEZE_KEPT", 10)
    froze = 0
    real = Freezer.freeze

    def counted(self: Freezer) -> None:
        nonlocal froze
        froze += 1
        real(self)

    monkeypatch.setattr(Freezer, "freeze", counted)
    async with open_files_feed(tmp_path, snapshot_every=25) as state:
        await all_acked(await send_all(state, actions(3, 150)))
        froze = 0
        got = await collect(state, "**", 0, 100)
    assert len(got) >= 100
    assert froze >= 10


async def test_a_subscriber_resumed_from_the_files_leaves_midway_cleanly(
    tmp_path: Path,
) -> None:
    # Unsubscribed while most of its history is still to be routed: it
    # gets nothing more, the state goes on, and a new resume from the same
    # revision gets the whole feed again.
    async with open_files_feed(tmp_path, snapshot_every=25) as state:
        live = Recorder()
        await state.subscribe("**", live)
        await all_acked(await send_all(state, actions(5, 150)))
        expected = list(live.got)
        assert len(expected) > 100
        early = Recorder()
        held = anyio.Event()

        async def stuck_after_ten(event: Any) -> int:
            early(event)
            if len(early.got) == 10:
                held.set()
                await anyio.sleep_forever()  # cancelled as it leaves
            return 1

        sub = await state.subscribe("**", stuck_after_ten, from_revision=0)
        await held.wait()
        await sub.unsubscribe()
        got = len(early.got)
        assert got == 10
        await all_acked([await state.send(Set("after", 1))])
        assert len(early.got) == got  # nothing after it left
        assert len(live.got) == len(expected) + 1
        assert await collect(state, "**", 0, len(live.got)) == live.got
