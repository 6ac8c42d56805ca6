"""Snapshots off the state actor: another process serialises, the actor goes on.

The forked child's own behaviour; the process that rebuilds a snapshot from
the files (the default) is tested in ``test_snapshot_rebuilt.py``.
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading

import anyio
import pytest

from stateward import Set, StateActor, open_state
from stateward.actors import _snapshots
from stateward.actors._files import Files
from stateward.actors.persistence import PersistenceConfig
from stateward.actors.persistence._fork import ForkedBody
from stateward.actors.persistence._snapshot import read_snapshot

from .forks import assert_reaped, holding, spy_forks

pytestmark = pytest.mark.anyio


def _snapshot_files(directory) -> dict[int, object]:
    found = {}
    for name in os.listdir(directory):
        if name.startswith("snapshot-") and name.endswith(".snap"):
            snap = read_snapshot(Files(), os.path.join(directory, name), name)
            found[snap.revision] = snap.root
    return found


@pytest.mark.parametrize("child", ["replay", "fork"])
async def test_each_snapshot_is_exactly_the_tree_at_its_revision(tmp_path, child):
    # Writes go on while children serialise: every snapshot file must still
    # be the tree at its own revision (a model replays the same writes).
    model = {"jobs": {}}
    at = {0: copy.deepcopy(model)}
    config = PersistenceConfig(
        str(tmp_path), snapshot_every=300, keep_snapshots=100, snapshot_child=child
    )
    async with anyio.create_task_group() as tg:
        actor = StateActor(initial={"jobs": {}}, persistence=config)
        state = await tg.start(actor.run)
        for i in range(1_500):
            key, value = f"k{i % 97}", {"n": i, "pad": "x" * (i % 50)}
            await state.send(Set(f"jobs.{key}", value), durable=False)
            model["jobs"][key] = value
            at[state.revision] = copy.deepcopy(model)
        with anyio.fail_after(30):  # the latest child's snapshot is written
            await state._core.persister.snapshots.idle.wait()
        assert state.statistics().snapshots >= 1
        await state.stop()
    found = _snapshot_files(tmp_path)
    assert len(found) >= 3
    for revision, root in found.items():
        assert root == at[revision], revision


async def test_the_actor_does_not_wait_for_a_snapshot_being_serialised(
    tmp_path, monkeypatch
):
    # A snapshot whose bytes are held back: with the old design (serialising
    # on the actor) no send could complete meanwhile.
    release = threading.Event()
    real_start = _snapshots.fork_serialise

    def held_start(root):
        forked = real_start(root)
        assert forked is not None, "this platform forks"

        class Held(ForkedBody):
            def read(self, timeout: float | None = None) -> bytes:
                release.wait(30)
                return super().read(timeout)

        return Held(forked.pid, forked.fd)

    monkeypatch.setattr(_snapshots, "fork_serialise", held_start)
    config = PersistenceConfig(
        str(tmp_path), "fsync", snapshot_every=50, snapshot_child="fork"
    )
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            state = await tg.start(StateActor(initial={}, persistence=config).run)
            for i in range(60):  # the 50th starts a snapshot
                await state.send(Set("n", i))
            revision_held = 50
            for i in range(60, 300):  # all applied and durable while it is held
                await state.send(Set("n", i))
            assert state.statistics().snapshots == 0
            assert state.revision == 300
            release.set()
            await state._core.persister.snapshots.idle.wait()  # written
            assert state.statistics().snapshots == 1
            found = _snapshot_files(tmp_path)
            assert found[revision_held] == {"n": revision_held - 1}
            await state.stop()


async def test_without_a_child_the_snapshot_is_serialised_in_place(
    tmp_path, monkeypatch
):
    # Neither a new process (no posix_spawn, a frozen interpreter) nor a
    # fork (Windows).
    monkeypatch.setattr(_snapshots, "can_spawn", lambda: False)
    monkeypatch.setattr(_snapshots, "fork_serialise", lambda root: None)
    async with open_state({}, state_dir=tmp_path, snapshot_every=10) as state:
        for i in range(25):
            await state.send(Set("n", i))
    found = _snapshot_files(tmp_path)
    assert found[10] == {"n": 9}
    assert found[25] == {"n": 24}  # the last one, at a clean exit


async def test_a_snapshot_child_is_reaped_when_its_read_is_cancelled(
    tmp_path, monkeypatch
):
    # The actor is cancelled while its snapshot waits for a worker thread:
    # the read never begins, and the child (its body larger than a pipe
    # holds) must not stay blocked on the pipe, holding the directory's
    # files, nor stay a zombie.
    children = spy_forks(monkeypatch, _snapshots)
    # (fsync: a send returns after its commit, so after the actor ordered
    # the snapshot that followed it)
    config = PersistenceConfig(
        str(tmp_path), "fsync", snapshot_every=5, snapshot_child="fork"
    )
    big = {f"k{i}": "x" * 100 for i in range(2_000)}  # about 220 kB of JSON
    # The tokens go back only once the actor is gone (the stack exits last).
    with anyio.fail_after(30):
        async with (
            contextlib.AsyncExitStack() as stack,
            anyio.create_task_group() as tg,
        ):
            state = await tg.start(StateActor(initial=big, persistence=config).run)
            # no worker thread for the snapshot's read
            limiter = state._core.persister.snapshots.limiter
            await stack.enter_async_context(holding(limiter))
            for i in range(5):
                await state.send(Set("n", i))
            assert len(children) == 1
            tg.cancel_scope.cancel()
    (child,) = children
    assert_reaped(child)


def test_a_snapshot_child_does_not_keep_its_parents_locks(tmp_path):
    # A parent that crashes mid-snapshot must leave no child holding the
    # state directory's flock (nor a checkpoint saver's): a restart would
    # find the directory locked until the child finished. Closing the
    # parent's fd below stands for its death.
    import fcntl

    from stateward.actors.persistence import _fork

    lock = os.open(tmp_path / "LOCK", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    child = _fork.start({"k": "x" * 300_000})  # more than a pipe holds
    assert child is not None, "this platform forks"
    try:
        # Its first byte: the child is past its start, blocked on the pipe.
        assert os.read(child.fd, 1) == b"{"
        os.close(lock)
        again = os.open(tmp_path / "LOCK", os.O_RDWR)
        try:
            fcntl.flock(again, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free at once
        finally:
            os.close(again)
        assert os.waitpid(child.pid, os.WNOHANG) == (0, 0)  # still running
    finally:
        child.abandon()
    assert_reaped(child)


@pytest.mark.parametrize("waitid", [True, False], ids=["waitid", "no-waitid"])
async def test_a_snapshot_child_that_hangs_is_killed_and_snapshots_go_on(
    tmp_path, monkeypatch, caplog, waitid
):
    # A child that never finishes (as one deadlocked at the fork would)
    # stopped every later snapshot and made a clean stop wait forever. Now
    # it is killed at snapshot_timeout, the snapshot counts as failed, and
    # the next one is taken. Without os.waitid (macOS before Python 3.13)
    # the child is reaped by a plain waitpid.
    import signal

    from stateward.actors.persistence import _fork

    if not waitid:
        monkeypatch.delattr(os, "waitid")

    hang = [True]  # read in the child as it was at the fork
    real_encode = _fork.dumps_bytes

    def encode(root):
        if hang[0]:
            signal.pause()  # never returns: only the SIGKILL ends it
        return real_encode(root)

    monkeypatch.setattr(_fork, "dumps_bytes", encode)
    children = spy_forks(monkeypatch, _snapshots)
    config = PersistenceConfig(
        str(tmp_path),
        "fsync",
        snapshot_every=5,
        snapshot_timeout=0.2,
        snapshot_child="fork",
    )
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            state = await tg.start(StateActor(initial={}, persistence=config).run)
            for i in range(5):  # the 5th starts a snapshot, which hangs
                await state.send(Set("n", i))
            assert len(children) == 1
            hang[0] = False
            persister = state._core.persister
            await persister.snapshots.idle.wait()  # killed at the timeout
            assert_reaped(children[0])
            assert state.statistics().snapshots == 0
            await state.send(Set("n", 5))  # due still: a new child, which works
            await persister.snapshots.idle.wait()
            assert len(children) == 2
            assert state.statistics().snapshots == 1
            assert _snapshot_files(tmp_path)[6] == {"n": 5}
            await state.stop()
    assert "took over 0.2 s: killed" in caplog.text
