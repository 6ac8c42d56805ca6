"""When snapshots are taken: an exact count, or (the default) one that adapts.

By default a snapshot waits for ADAPTIVE_SNAPSHOT_EVERY revisions and for the
journal since the last snapshot to be as large as that snapshot. The floor is
lowered to 10 here so that a few dozen sends show the schedule.
"""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING

import anyio
import pytest

from stateward import PersistenceConfig, Set, StateActor, open_state
from stateward.actors import _gc_freeze, _snapshots
from stateward.actors.persistence._format import _SEGMENT_HEAD
from stateward.actors.persistence._segments import read_segment

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

FLOOR = 10
PAD = "x" * 4000  # a snapshot of about 4 kB; a record is about 80 bytes


@pytest.fixture(autouse=True)
def _low_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_snapshots, "ADAPTIVE_SNAPSHOT_EVERY", FLOOR)
    monkeypatch.setattr(_gc_freeze, "FREEZE_EVERY", FLOOR)


def _snapshot_revisions(directory: Path) -> list[int]:
    return sorted(
        int(name.split("-")[1].split(".")[0])
        for name in os.listdir(directory)
        if name.startswith("snapshot-") and name.endswith(".snap")
    )


def _record_bytes(directory: Path, first: int) -> int:
    name = f"journal-{first:020d}.wal"
    # (up to the zeros the segment is written ahead with)
    size = read_segment((directory / name).read_bytes(), name).valid_size
    return size - _SEGMENT_HEAD.size


def _body_bytes(directory: Path, revision: int) -> int:
    from stateward.actors._files import Files
    from stateward.actors.persistence._snapshot import read_snapshot

    name = f"snapshot-{revision:020d}.snap"
    return read_snapshot(Files(), str(directory / name), name).size


async def test_a_small_tree_is_snapshotted_every_floor_revisions(
    tmp_path: Path,
) -> None:
    async with open_state({}, state_dir=tmp_path, keep_snapshots=100) as state:
        for i in range(3 * FLOOR):
            await state.send(Set("n", i))
        await state.stop()
    # 0 (created), then once the floor is reached, and the clean stop.
    revisions = _snapshot_revisions(tmp_path)
    assert revisions[:2] == [0, FLOOR]
    assert len(revisions) >= 3


async def test_a_big_tree_waits_until_the_journal_is_as_large_as_its_snapshot(
    tmp_path: Path,
) -> None:
    async with open_state(
        {"pad": PAD}, state_dir=tmp_path, keep_snapshots=100
    ) as state:
        for i in range(150):
            await state.send(Set("n", i))
        await state.stop()
    revisions = _snapshot_revisions(tmp_path)
    assert revisions[0] == 0  # created
    assert revisions[-1] == 150  # the clean stop
    taken = revisions[1:-1]
    assert taken, "no snapshot once the journal outgrew the snapshot"
    first = taken[0]
    assert first > 4 * FLOOR  # not at the floor: the snapshot is larger
    # The journal up to it (one segment: it rotates at each snapshot) is at
    # least as large as the snapshot before it, and was not much earlier.
    assert _record_bytes(tmp_path, 1) >= _body_bytes(tmp_path, 0)
    per_record = _record_bytes(tmp_path, 1) / first
    assert _record_bytes(tmp_path, 1) - 2 * per_record < _body_bytes(tmp_path, 0)


async def test_an_exact_count_ignores_the_sizes(tmp_path: Path) -> None:
    async with open_state(
        {"pad": PAD}, state_dir=tmp_path, snapshot_every=7, keep_snapshots=100
    ) as state:
        for i in range(21):
            await state.send(Set("n", i))
        await state.stop()
    revisions = _snapshot_revisions(tmp_path)
    assert revisions[:2] == [0, 7]  # not waiting for the journal to grow
    # (a snapshot still being written delays the next one: at least 7 apart,
    # but for the one of the clean stop, which is always written)
    assert all(b - a >= 7 for a, b in itertools.pairwise(revisions[:-1]))
    assert revisions[-1] == 21


async def test_after_a_crash_the_replayed_journal_counts(tmp_path: Path) -> None:
    # 30 records (about 2.4 kB) before a crash, with no snapshot after the
    # first: once reopened, the journal reaches the snapshot's 4 kB after
    # about 20 more records, not 50.
    config = PersistenceConfig(str(tmp_path), keep_snapshots=100)
    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor(initial={"pad": PAD}, persistence=config).run)
        for i in range(30):
            await state.send(Set("n", i))
        tg.cancel_scope.cancel()  # no clean stop, so no last snapshot
    assert _snapshot_revisions(tmp_path) == [0]
    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor(persistence=config).run)
        persister = state._core.persister
        sent = 0
        while not (persister.snapshots.busy or persister.snapshots.last):
            with anyio.fail_after(10):
                await state.send(Set("n", 100 + sent))
            sent += 1
            assert sent < 40, "the replayed journal was not counted"
        tg.cancel_scope.cancel()
    assert sent > 10  # and the snapshot did wait for the journal to grow


async def test_the_gc_is_frozen_every_floor_revisions_between_snapshots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Snapshots are rare for a big tree; what is written meanwhile is still
    # frozen as often as before, so full collections stay short.
    frozen: list[int] = []
    async with open_state(
        {"pad": PAD}, state_dir=tmp_path, keep_snapshots=100
    ) as state:
        with monkeypatch.context() as patch:
            spy = lambda: frozen.append(state.revision)  # noqa: E731
            patch.setattr(_gc_freeze.gc, "freeze", spy)
            for i in range(3 * FLOOR):
                await state.send(Set("n", i))
            assert _snapshot_revisions(tmp_path) == [0]  # none taken meanwhile
        await state.stop()
    assert len(frozen) >= 2
    assert frozen[0] >= FLOOR
    assert all(b - a >= FLOOR for a, b in itertools.pairwise(frozen))


@pytest.mark.parametrize("freeze_gc", [True, False])
async def test_freeze_gc_false_leaves_the_collector_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, freeze_gc: bool
) -> None:
    # gc.freeze() is process-wide: a program with long-lived cycles of its
    # own must be able to say no, from open_state and from the Store.
    import gc

    from stateward import Store

    frozen: list[str] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append("freeze"))
    async with open_state(
        {}, state_dir=tmp_path / "a", snapshot_every=5, freeze_gc=freeze_gc
    ) as state:
        for i in range(3 * FLOOR):  # past the floor, through snapshots
            await state.send(Set("n", i))
        with anyio.fail_after(30):  # the child's snapshot is written meanwhile
            await state._core.persister.snapshots.idle.wait()
        assert state.statistics().snapshots >= 1
    with Store(state_dir=tmp_path / "b", snapshot_every=5, freeze_gc=freeze_gc) as s:
        for i in range(3 * FLOOR):
            s.set("n", i)
    if freeze_gc:
        assert len(frozen) >= 4
    else:
        assert frozen == []
