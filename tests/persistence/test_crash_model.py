"""D3: every crash point of a real workload, in four disk states, recovers.

The workload (300 actions from 4 concurrent senders, snapshots, retention)
runs for real through :class:`RecordingFiles`. Then, for every prefix of its
file operations, :class:`Disk` builds what a power cut at that moment can
leave: (i) only what was synced, (ii) everything, (iii) a random subset of the
unsynced operations, (iv) that with the last unsynced append torn (zeros or
garbage). Recovery must open each one, twice, to the same tree, which must be
the workload's tree at some revision no older than the last acknowledged one.
"""

from __future__ import annotations

import random
import shutil
import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from stateward import (
    ActionRejectedError,
    CorruptStateError,
    PersistenceConfig,
    StateActor,
)
from stateward._json import copy_json
from stateward.actors.persistence import recover
from stateward.tree import Tree

from .crashmodel import MODES, Disk, RecordingFiles
from .workload import actions

if TYPE_CHECKING:
    from pathlib import Path

    from stateward import Action

pytestmark = pytest.mark.anyio

INITIAL: dict[str, Any] = {"data": {}, "meta": {}}
ACTIONS = 300
SNAPSHOT_EVERY = 40


async def _run_workload(
    root: Path, durability: str, seed: int
) -> tuple[RecordingFiles, list[tuple[int, int]], list[Any], int]:
    """Run the workload; return its log, acks (log length, revision), history."""
    files = RecordingFiles(str(root))
    config = PersistenceConfig(
        str(root / "state"),
        durability=durability,  # type: ignore[arg-type]
        snapshot_every=SNAPSHOT_EVERY,
        keep_snapshots=2,
        files=files,
        # Forked: quick, so that several snapshots fall within the run. A
        # process rebuilding one only reads; the file operations recorded
        # here (this process's) are the same either way.
        snapshot_child="fork",
    )
    todo = actions(seed, ACTIONS)
    changed: list[tuple[int, Action]] = []
    acks: list[tuple[int, int]] = []

    async def worker(mine: list[Action]) -> None:
        persister = state._core.persister
        assert persister is not None
        snapshots = persister.snapshots
        for n, action in enumerate(mine):
            if state.revision - snapshots.last > SNAPSHOT_EVERY + 10:
                # A machine slow to make snapshots (a busy CI): let the one
                # under way land, so that several fall within the run
                # whatever the speed (a snapshot due while one is under way
                # is put off).
                await snapshots.idle.wait()
            durable = durability == "fsync" or n % 4 == 0
            try:
                receipt = await state.send(action, durable=durable or None)
            except ActionRejectedError:
                continue
            if receipt.changed:
                changed.append((receipt.revision, action))
            if durable:
                acks.append((len(files.log), receipt.revision))

    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor(initial=INITIAL, persistence=config).run)
        async with anyio.create_task_group() as workers:
            for w in range(4):
                workers.start_soon(worker, todo[w::4])
        persister = state._core.persister
        assert persister is not None
        await persister.snapshots.idle.wait()  # (the last one)
        snapshots = state.statistics().snapshots
        await state.stop()
    changed.sort(key=lambda item: item[0])
    assert [rev for rev, _ in changed] == list(range(1, len(changed) + 1))
    tree = Tree(INITIAL)
    history = [copy_json(tree.root)]
    for _, action in changed:
        tree.apply(action)
        history.append(copy_json(tree.root))
    return files, acks, history, snapshots


def _check_every_crash_point(
    files: RecordingFiles,
    acks: list[tuple[int, int]],
    history: list[Any],
    scratch: Path,
    seed: int,
) -> tuple[int, list[str]]:
    rng = random.Random(seed)
    log = files.log
    violations: list[str] = []
    checked = 0
    disk = Disk([], 0)
    ack_at = 0
    acked = 0
    for k in range(len(log) + 1):
        if k:
            disk.step(log[k - 1])
        while ack_at < len(acks) and acks[ack_at][0] <= k:
            acked = max(acked, acks[ack_at][1])
            ack_at += 1
        for mode in MODES:
            image = scratch / f"{k}-{mode}"
            image.mkdir()
            disk.image(image, mode, rng)
            config = PersistenceConfig(str(image / "state"), keep_snapshots=2)
            where = f"crash after op {k} {log[k - 1][:2] if k else ''}, {mode}"
            try:
                first = recover(config, INITIAL)
                first.journal.close()
                again = recover(config, INITIAL)
                again.journal.close()
            except CorruptStateError as exc:
                violations.append(f"{where}: recovery refused: {exc}")
            else:
                revision = first.tree.revision
                if revision < acked:
                    violations.append(f"{where}: revision {revision} < acked {acked}")
                elif revision >= len(history) or first.tree.root != history[revision]:
                    violations.append(f"{where}: wrong tree at revision {revision}")
                elif (again.tree.revision, again.tree.root) != (
                    revision,
                    first.tree.root,
                ):
                    violations.append(f"{where}: a second recovery differs")
            checked += 1
            shutil.rmtree(image)
    return checked, violations


@pytest.mark.parametrize(
    "durability",
    # "flush" builds the same disk images with unsynced records too: it runs
    # in the slow group (.ci/run runs it), "fsync" in every run.
    ["fsync", pytest.param("flush", marks=pytest.mark.slow)],
)
async def test_every_crash_point_recovers_what_was_acknowledged(
    tmp_path: Path, durability: str
) -> None:
    """D3: all crash points x 4 disk states: 0 violations."""
    seed = 3
    root = tmp_path / "run"
    root.mkdir()
    files, acks, history, snapshots = await _run_workload(root, durability, seed)
    assert snapshots >= 3
    assert any(op[0] == "unlink" and ".snap" in str(op[1]) for op in files.log), (
        "no retention pass in the workload"
    )
    scratch = tmp_path / "images"
    scratch.mkdir()
    started = time.monotonic()
    checked, violations = await anyio.to_thread.run_sync(
        _check_every_crash_point, files, acks, history, scratch, seed
    )
    print(
        f"D3 {durability}: {len(files.log)} operations, {checked} crash images, "
        f"{len(violations)} violations, {time.monotonic() - started:.1f} s"
    )
    assert checked == (len(files.log) + 1) * len(MODES)
    assert not violations, "\n".join(violations[:20])
