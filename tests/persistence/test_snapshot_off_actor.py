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
from stateward.actors import _persister, _snapshots
from stateward.actors._journal_writer import JournalWriter
from stateward.actors.persistence import PersistenceConfig

from .forks import assert_reaped, held_back, holding, snapshot_files, spy_forks

pytestmark = pytest.mark.anyio


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
    found = snapshot_files(tmp_path)
    assert len(found) >= 3
    for revision, root in found.items():
        assert root == at[revision], revision


@pytest.mark.parametrize("made_by", ["fork", "replay"])
async def test_the_actor_does_not_wait_for_a_snapshot_being_made(
    tmp_path, monkeypatch, made_by
):
    # A snapshot whose bytes are held back: with the old design (serialising
    # on the actor) no send could complete meanwhile. Rebuilt, the state
    # does not even fork (a fork pauses it for its page tables).
    release = threading.Event()
    maker = "fork_serialise" if made_by == "fork" else "spawn_rebuild"
    real = getattr(_snapshots, maker)

    def held(*args: object, **how: object) -> object:
        child = real(*args, **how)
        assert child is not None, f"this platform can {made_by}"
        return held_back(child, release)

    monkeypatch.setattr(_snapshots, maker, held)
    if made_by == "replay":

        def refuse(root: object) -> None:
            raise AssertionError("the state forked for a snapshot")

        monkeypatch.setattr(_snapshots, "fork_serialise", refuse)
        monkeypatch.chdir(tmp_path)  # the new interpreter finds stateward anyway
    directory = tmp_path / "state"
    config = PersistenceConfig(
        str(directory), "fsync", snapshot_every=50, snapshot_child=made_by
    )
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            state = await tg.start(StateActor(initial={}, persistence=config).run)
            for i in range(300):  # the 50th orders a snapshot, held meanwhile
                await state.send(Set("n", i))  # each applied and durable
            assert state.statistics().snapshots == 0
            assert state.revision == 300
            release.set()
            await state._core.persister.snapshots.idle.wait()  # written
            assert state.statistics().snapshots == 1
            assert snapshot_files(directory)[50] == {"n": 49}
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
    found = snapshot_files(tmp_path)
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


@pytest.mark.parametrize("made_by", ["fork", "replay"])
def test_a_snapshot_child_does_not_keep_its_parents_locks(
    tmp_path, monkeypatch, made_by
):
    # A parent that crashes mid-snapshot must leave no child holding the
    # state directory's flock (nor a checkpoint saver's): a restart would
    # find the directory locked until the child finished. Closing the
    # parent's fd below stands for its death. Each child closes what it
    # inherited.
    import fcntl

    from stateward.actors.persistence import _compact, _fork

    lock = os.open(tmp_path / "LOCK", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    # Inheritable, as a program may make its own files (stateward's are not):
    # each child still lets go of it.
    os.set_inheritable(lock, True)
    if made_by == "fork":
        child = _fork.start({"k": "x" * 300_000})  # more than a pipe holds
        assert child is not None, "this platform forks"
        # Its first byte: the child is past its start, blocked on the pipe.
        assert os.read(child.fd, 1) == b"{"
    else:
        code = "import os, time; os.write(1, b'{'); time.sleep(30)"
        monkeypatch.setattr(_compact, "_CODE", code)
        child = _compact.spawn(str(tmp_path), 0)
        assert child is not None, "this platform spawns"
        # Its first byte: past its exec (posix_spawn may return just before
        # the new program's close-on-exec files are closed).
        assert os.read(child.fd, 1) == b"{"
    try:
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
            assert snapshot_files(tmp_path)[6] == {"n": 5}
            await state.stop()
    assert "took over 0.2 s: killed" in caplog.text


@contextlib.contextmanager
def segment_end_held(monkeypatch):
    """Hold the journal's segment end (a snapshot's rotation) until released.

    Yields (entered, release): threading Events, the first set once the
    rotation is under way in its worker thread.
    """
    entered, release = threading.Event(), threading.Event()
    real = JournalWriter.end_segment

    def held(self: JournalWriter, end: object) -> None:
        entered.set()
        release.wait(30)
        real(self, end)  # type: ignore[arg-type]

    monkeypatch.setattr(JournalWriter, "end_segment", held)
    try:
        yield entered, release
    finally:
        release.set()  # (a failed test must not leave the thread blocked)


@pytest.mark.parametrize("durability", ["fsync", "flush", "none"])
async def test_sends_go_on_while_a_snapshot_begins_its_segment(
    tmp_path, monkeypatch, durability
):
    # Ending the old segment and starting the next costs fsyncs (and under
    # "flush" or "none" the old segment's whole unsynced tail): the journal
    # takes no commit meanwhile. Queued commits had room for 16 sends, after
    # which every send waited for the disk, those that do not wait for it
    # (durable=False) too.
    config = PersistenceConfig(
        str(tmp_path), durability, snapshot_every=10, snapshot_child="fork"
    )
    with segment_end_held(monkeypatch) as (entered, release):
        async with anyio.create_task_group() as tg:
            state = await tg.start(StateActor(initial={}, persistence=config).run)
            for i in range(10):  # the 10th orders the snapshot
                await state.send(Set(f"k{i}", i))
            await anyio.to_thread.run_sync(entered.wait, 10)
            with anyio.fail_after(10):
                for i in range(10, 500):
                    await state.send(Set(f"k{i}", i), durable=False)
            assert state._core.persister.durable_revision <= 10  # still held
            release.set()
            await state.stop()
    async with open_state(state_dir=str(tmp_path)) as again:
        assert await again.get("") == {f"k{i}": i for i in range(500)}


async def test_commits_waiting_for_the_journal_are_bounded_by_their_bytes(
    tmp_path, monkeypatch
):
    # The room is also counted in the records' bytes: large values stop the
    # actor sooner than the count of commits would, and go on once the
    # journal takes them. Nothing is lost.
    monkeypatch.setattr(_persister, "_QUEUE_BYTES", 20_000)
    config = PersistenceConfig(
        str(tmp_path), "flush", snapshot_every=5, snapshot_child="fork"
    )
    value = "x" * 4_000
    done = 0
    with segment_end_held(monkeypatch) as (entered, release):
        async with anyio.create_task_group() as tg:
            state = await tg.start(StateActor(initial={}, persistence=config).run)
            for i in range(5):
                await state.send(Set(f"k{i}", value))
            await anyio.to_thread.run_sync(entered.wait, 10)

            finished = anyio.Event()

            async def sender() -> None:
                nonlocal done
                for i in range(5, 40):
                    await state.send(Set(f"k{i}", value), durable=False)
                    done += 1
                finished.set()

            tg.start_soon(sender)
            await anyio.wait_all_tasks_blocked()
            persister = state._core.persister
            # Five records of 4 kB fill 20 kB; one send more may be taken
            # into the actor's next batch before it waits.
            assert 4 <= done <= 7
            assert 20_000 <= persister.inflight_bytes < 20_000 + 2 * 4_200
            release.set()
            with anyio.fail_after(10):
                await finished.wait()
            await state.stop()
    async with open_state(state_dir=str(tmp_path)) as again:
        assert await again.get("") == {f"k{i}": value for i in range(40)}
