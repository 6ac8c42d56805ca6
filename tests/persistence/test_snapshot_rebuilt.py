"""Snapshots rebuilt from the files by a new process: no fork, no pause.

The default ``snapshot_child="replay"``: once the journal holds a snapshot's
revision, a new Python process reads the previous snapshot and the journal,
replays up to that revision and serialises the tree; the parent writes the
file. Every snapshot must still be exactly the tree at its revision, and a
failed or hanging process must cost a snapshot, never a record.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest

from stateward import CorruptStateError, Set, StateActor
from stateward.actors import _snapshots
from stateward.actors._files import Files
from stateward.actors.persistence import PersistenceConfig, _compact, recover
from stateward.actors.persistence._snapshot import read_snapshot

from .forks import assert_reaped, snapshot_files, spy_forks

if TYPE_CHECKING:
    from stateward.actors.persistence._fork import ForkedBody

pytestmark = pytest.mark.anyio


def _no_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    def fork_serialise(root: object) -> None:
        raise AssertionError("the state forked for a snapshot")

    monkeypatch.setattr(_snapshots, "fork_serialise", fork_serialise)


def _spy_rebuilds(monkeypatch: pytest.MonkeyPatch) -> list[ForkedBody]:
    children: list[ForkedBody] = []
    real = _snapshots.spawn_rebuild

    def spawn(directory: str, revision: int, **how: bool) -> ForkedBody | None:
        child = real(directory, revision, **how)
        assert child is not None, "this platform spawns"
        children.append(child)
        return child

    monkeypatch.setattr(_snapshots, "spawn_rebuild", spawn)
    return children


async def _to_a_snapshot(config: PersistenceConfig, initial: object = None) -> None:
    """Five sends to a new state, the snapshot they make (``snapshot_every=5``)."""
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            actor = StateActor(initial=initial or {}, persistence=config)
            state = await tg.start(actor.run)
            for i in range(5):
                await state.send(Set("n", i))
            await state._core.persister.snapshots.idle.wait()
            await state.stop()


async def test_a_rebuilt_snapshot_and_the_journal_recover_the_acknowledged_state(
    tmp_path, monkeypatch
):
    # A crash image taken once a rebuilt snapshot is written (every send
    # acknowledged as fsynced): recovery starts from that snapshot and
    # replays the journal after it, to exactly what was acknowledged.
    _no_fork(monkeypatch)
    children = _spy_rebuilds(monkeypatch)
    directory, image = tmp_path / "state", tmp_path / "image"
    config = PersistenceConfig(
        str(directory), "fsync", snapshot_every=40, snapshot_child="replay"
    )
    model: dict[str, object] = {"big": 2**64 - 1, "small": -(2**63), "f": -0.0}
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            actor = StateActor(initial=dict(model), persistence=config)
            state = await tg.start(actor.run)
            for i in range(40):
                await state.send(Set(f"k{i % 7}", {"i": i, "s": "é" * (i % 3)}))
                model[f"k{i % 7}"] = {"i": i, "s": "é" * (i % 3)}
            await state._core.persister.snapshots.idle.wait()
            for i in range(40, 57):  # after the snapshot: in the journal only
                await state.send(Set(f"k{i % 7}", i))
                model[f"k{i % 7}"] = i
            shutil.copytree(directory, image, ignore=shutil.ignore_patterns("LOCK"))
            await state.stop()
    assert len(children) == 1
    assert_reaped(children[0])
    recovered = recover(PersistenceConfig(str(image)), None)
    recovered.journal.close()
    assert recovered.snapshot_revision == 40
    assert recovered.tree.revision == 57
    assert recovered.tree.root == model


async def test_failed_rebuilds_cost_snapshots_then_snapshots_are_forked(
    tmp_path, monkeypatch, caplog
):
    # Each failure costs its snapshot only (the journal holds everything);
    # after REBUILD_ATTEMPTS in a row, snapshots are forked.
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(_compact, "_CODE", "import sys; sys.exit(3)")
    rebuilt = _spy_rebuilds(monkeypatch)
    forked = spy_forks(monkeypatch, _snapshots)
    config = PersistenceConfig(
        str(tmp_path), "fsync", snapshot_every=5, snapshot_child="replay"
    )
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            state = await tg.start(StateActor(initial={}, persistence=config).run)
            persister = state._core.persister
            n = 0
            while not forked:  # each send past the 5th finds a snapshot due
                await state.send(Set("n", n))
                n += 1
                await persister.snapshots.idle.wait()
                if 0 < len(rebuilt) < _snapshots.REBUILD_ATTEMPTS:
                    assert "tried again next time" in caplog.text
                    assert persister.snapshots.rebuilds()
            assert len(rebuilt) == _snapshots.REBUILD_ATTEMPTS
            assert "status" in caplog.text
            assert "forked from now on" in caplog.text
            assert not persister.snapshots.rebuilds()
            assert state.statistics().snapshots == 1  # the forked one
            assert snapshot_files(tmp_path)[n] == {"n": n - 1}
            await state.stop()
    for child in rebuilt:
        assert_reaped(child)


async def test_a_rebuild_that_hangs_is_killed_at_the_snapshot_timeout(
    tmp_path, monkeypatch, caplog
):
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(_compact, "_CODE", "import time; time.sleep(60)")
    rebuilt = _spy_rebuilds(monkeypatch)
    config = PersistenceConfig(
        str(tmp_path),
        "fsync",
        snapshot_every=5,
        snapshot_timeout=0.3,
        snapshot_child="replay",
    )
    await _to_a_snapshot(config)  # (it waits for the hung one to be killed)
    assert_reaped(rebuilt[0])
    assert "took over 0.3 s: killed" in caplog.text
    # The state's first, and the last one, written at the stop.
    assert snapshot_files(tmp_path) == {0: {}, 5: {"n": 4}}


def _crashed_after(directory: object, sends: list[tuple[str, int]]) -> None:
    """A new persisted state at *directory* that sent *sends*, then crashed.

    (No snapshot at the stop: the journal holds every revision after 0.)
    """

    async def write() -> None:
        config = PersistenceConfig(str(directory), "flush", snapshot_every=10**6)
        async with anyio.create_task_group() as tg:
            state = await tg.start(StateActor(initial={}, persistence=config).run)
            for path, value in sends:
                await state.send(Set(path, value))
            tg.cancel_scope.cancel()

    anyio.run(write)


def test_rebuild_replays_to_exactly_the_revision_asked_for(tmp_path):
    # Records after the revision are in the files too (the journal goes on):
    # the body is the tree at the revision, not later.
    _crashed_after(tmp_path, [(f"k{i % 4}", i) for i in range(30)])
    body = _compact.rebuild(str(tmp_path), 17)
    # revision r: the sends 0 .. r - 1
    assert json.loads(body) == {"k0": 16, "k1": 13, "k2": 14, "k3": 15}


def test_the_rebuilding_process_does_its_job_whatever_the_environment(
    tmp_path, monkeypatch, capfd
):
    # PYTHONINSPECT would keep the new interpreter waiting on the terminal
    # after its job (and exit 1 at the end of its input); PYTHONTRACEMALLOC
    # would trace a tree as large as the state's. Neither reaches it.
    _crashed_after(tmp_path, [(f"k{i}", i) for i in range(5)])
    monkeypatch.setenv("PYTHONINSPECT", "1")
    monkeypatch.setenv("PYTHONTRACEMALLOC", "1")
    tracing = (
        "import sys, tracemalloc; print(tracemalloc.is_tracing(), file=sys.stderr)\n"
    )
    monkeypatch.setattr(_compact, "_CODE", tracing + _compact._CODE)
    child = _compact.spawn(str(tmp_path), 5)
    assert child is not None
    assert json.loads(child.read(timeout=30)) == {f"k{i}": i for i in range(5)}
    assert capfd.readouterr().err == "False\n"


def test_the_rebuilding_process_imports_only_what_it_needs(
    tmp_path, monkeypatch, capfd
):
    # Not the package's __init__ (the actors, the event loops): a process
    # started for every snapshot of a large state starts in half the time.
    _crashed_after(tmp_path, [("k", 1)])
    exit_line = "sys.exit(main(sys.argv[2:]))\n"
    assert _compact._CODE.endswith(exit_line)
    report = "code = main(sys.argv[2:]); print(*sys.modules, file=sys.stderr)\n"
    monkeypatch.setattr(_compact, "_CODE", _compact._CODE[: -len(exit_line)] + report)
    child = _compact.spawn(str(tmp_path), 1)
    assert child is not None
    assert json.loads(child.read(timeout=30)) == {"k": 1}
    modules = set(capfd.readouterr().err.split())
    assert "stateward.tree" in modules
    assert not modules & {"asyncio", "trio", "stateward.actors.state"}


@pytest.mark.parametrize(
    ("executable", "spawns"),
    [
        ("/srv/app/.venv/bin/python", True),
        ("/usr/bin/python3.11", True),
        ("/opt/pypy/bin/pypy3", True),
        ("/usr/bin/uwsgi", False),  # an embedding server, as its own name
        ("", False),
    ],
)
def test_only_python_itself_is_started_again(monkeypatch, executable, spawns):
    monkeypatch.setattr(_compact.sys, "executable", executable)
    assert _compact.can_spawn() is spawns


def test_rebuild_refuses_what_the_files_cannot_give(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for directory in (ours, theirs):
        _crashed_after(directory, [("n", i) for i in range(3)])
    with pytest.raises(CorruptStateError, match="reaches revision 3, not 9"):
        _compact.rebuild(str(ours), 9)
    segment = "journal-00000000000000000001.wal"
    shutil.copy(theirs / segment, ours / segment)  # the same records, not ours
    with pytest.raises(CorruptStateError, match="belongs to another store"):
        _compact.rebuild(str(ours), 2)
    os.unlink(ours / "snapshot-00000000000000000000.snap")
    with pytest.raises(CorruptStateError, match="no snapshot at or before 2"):
        _compact.rebuild(str(ours), 2)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"a":NaN}', "not strict JSON"),
        (b'{"a":' * 300 + b"1" + b"}" * 300, "deep"),
        # orjson reads these as floats; the strict decoder, as integers
        # that the checks refuse.
        (b'{"a":18446744073709551616}', "64-bit"),
        (b'{"a":[-9223372036854775809]}', "64-bit"),
        (b'{"a":1e400}', "not a finite number"),
        (b'{"a":"\\ud800"}', "surrogate"),
        # what both read alike, long runs of digits included
        (b'{"a":18446744073709551615,"b":-9223372036854775808}', None),
        (b'{"k1234567890123456789":"12345678901234567890","f":1.5e300}', None),
    ],
)
def test_the_faster_decoder_refuses_nothing_less_than_the_strict_one(
    tmp_path, monkeypatch, body, why
):
    # Snapshots are decoded by orjson (recovery, and the rebuilding
    # process): what the strict decoder or the checks refuse must still be
    # refused, and what they take must come out the same, to the type.
    from stateward.actors.persistence import _snapshot
    from stateward.actors.persistence._format import _snapshot_header
    from stateward.actors.persistence._snapshot import fast_loads

    assert fast_loads() is not None, "the test extra installs orjson"
    path = tmp_path / "snapshot-00000000000000000007.snap"
    path.write_bytes(_snapshot_header(b"s" * 16, 7, body) + body)

    def outcome(strict: bool) -> object:
        if strict:  # (the strict decoder alone)
            monkeypatch.setattr(_snapshot, "fast_loads", lambda: None)
        try:
            root = read_snapshot(Files(), str(path), path.name).root
        except CorruptStateError as exc:
            return str(exc)
        return json.dumps(root), repr(root)

    fast, slow = outcome(strict=False), outcome(strict=True)
    assert fast == slow
    if why is None:
        assert fast == (json.dumps(json.loads(body)), repr(json.loads(body)))
    else:
        assert isinstance(fast, str)
        assert re.search(why, fast), fast


@pytest.mark.parametrize(
    ("from_bytes", "last_pause", "made_by"),
    [
        (1 << 20, 0.0005, "fork"),  # a small state: its fork is quicker
        (100, 0.0005, "replay"),  # the previous snapshot was large enough
        (1 << 20, 0.01, "replay"),  # a fork of this process paused it long
    ],
    ids=["small", "large-snapshot", "slow-fork"],
)
async def test_auto_rebuilds_once_a_fork_would_pause_the_state(
    tmp_path, monkeypatch, from_bytes, last_pause, made_by
):
    from stateward.actors.persistence import _fork

    monkeypatch.setattr(_snapshots, "REPLAY_FROM_BYTES", from_bytes)
    monkeypatch.setattr(_snapshots, "REPLAY_FROM_PAUSE", 0.005)  # (as shipped)
    monkeypatch.setattr(_fork, "last_pause", last_pause)
    rebuilt = _spy_rebuilds(monkeypatch)
    forked = spy_forks(monkeypatch, _snapshots)
    config = PersistenceConfig(str(tmp_path), "fsync", snapshot_every=5)
    assert config.snapshot_child == "auto"
    await _to_a_snapshot(config, {"pad": "x" * 200})  # a snapshot 0 of 212 bytes
    assert (len(rebuilt), len(forked)) == ((1, 0) if made_by == "replay" else (0, 1))
    assert snapshot_files(tmp_path)[5] == {"pad": "x" * 200, "n": 4}


_GB = 1 << 30


def _fake_proc(root, resident: int, cgroup: str, available: int = 8 * _GB):
    proc = root / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(
        f"MemTotal:       16000000 kB\nMemAvailable: {available // 1024} kB\n"
    )
    pages = resident // os.sysconf("SC_PAGE_SIZE")
    (proc / "self" / "statm").write_text(f"{pages * 2} {pages} 0 0 0 0 0\n")
    (proc / "self" / "cgroup").write_text(cgroup)
    return str(proc)


def _limit(directory, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text + "\n")


def test_a_rebuild_needs_room_for_a_copy_under_every_memory_limit(tmp_path):
    cgroups = tmp_path / "cg"
    # cgroup v1: 2 GB allowed, 1.2 GB used, 0.8 GB left: not enough for a
    # copy of a 1 GB process, however much the machine has.
    v1 = _fake_proc(tmp_path / "v1", _GB, "9:name=systemd:/\n4:memory:/svc\n")
    _limit(
        cgroups / "memory" / "svc",
        {"memory.limit_in_bytes": str(2 * _GB), "memory.usage_in_bytes": "1288490188"},
    )
    assert not _compact.has_room(v1, str(cgroups))
    # cgroup v2, the limit set on a parent ("max" below it): 2 GB left.
    v2 = _fake_proc(tmp_path / "v2", _GB, "0::/a/b\n")
    _limit(cgroups / "a", {"memory.max": str(3 * _GB), "memory.current": str(_GB)})
    _limit(cgroups / "a" / "b", {"memory.max": "max", "memory.current": str(_GB)})
    assert _compact.has_room(v2, str(cgroups))  # 2 GB >= 1.5 x 1 GB
    big = _fake_proc(tmp_path / "big", 2 * _GB, "0::/a/b\n")
    assert not _compact.has_room(big, str(cgroups))  # 2 GB < 1.5 x 2 GB
    # No limit, and the machine short of memory.
    short = _fake_proc(tmp_path / "short", _GB, "0::/\n", available=_GB)
    assert not _compact.has_room(short, str(tmp_path / "none"))
    # Nothing to read (not Linux): nothing says no.
    assert _compact.has_room(str(tmp_path / "nowhere"), str(tmp_path / "none"))


async def test_auto_forks_where_memory_has_no_room_for_a_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(_snapshots, "REPLAY_FROM_BYTES", 0)  # large enough
    monkeypatch.setattr(_snapshots, "has_room", lambda: False)
    rebuilt = _spy_rebuilds(monkeypatch)
    forked = spy_forks(monkeypatch, _snapshots)
    await _to_a_snapshot(PersistenceConfig(str(tmp_path), "fsync", snapshot_every=5))
    assert (len(rebuilt), len(forked)) == (0, 1)
    assert snapshot_files(tmp_path)[5] == {"n": 4}


async def test_a_large_persisted_checkpoint_is_rebuilt_without_a_fork(
    tmp_path, monkeypatch
):
    # The tree at the save's revision, encoded as a forked child would
    # (a checkpoint's state.json), while sends go on; no fork.
    from stateward import Checkpoints
    from stateward.actors._checkpoint_files import _STRICT, TREE

    _no_fork(monkeypatch)
    from stateward.actors.persistence import _fork

    def no_fork(*args: object) -> None:
        raise AssertionError("forked for a checkpoint")

    monkeypatch.setattr(_fork, "start", no_fork)
    monkeypatch.setattr(_snapshots, "REPLAY_FROM_BYTES", 0)  # large enough
    rebuilt = _spy_rebuilds(monkeypatch)
    config = PersistenceConfig(str(tmp_path / "state"), "none")
    initial = {"jobs": {f"k{i}": {"n": i, "s": "é"} for i in range(3_000)}}
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            actor = StateActor(initial=initial, persistence=config)
            state = await tg.start(actor.run)
            expected = copy.deepcopy(initial)
            for i in range(100):
                await state.send(Set(f"jobs.k{i}.n", -i))
                expected["jobs"][f"k{i}"]["n"] = -i
            checkpoints = Checkpoints(state, tmp_path / "cp")
            async with anyio.create_task_group() as senders:

                async def send_on() -> None:
                    for i in range(100, 400):
                        await state.send(Set(f"jobs.k{i}.n", -i))
                        await anyio.lowlevel.checkpoint()

                senders.start_soon(send_on)
                info = await checkpoints.save(name="rebuilt")
            # The tree at the revision save() read, while sends went on.
            assert 99 <= info.revision < 399
            for i in range(100, info.revision + 1):  # revision i: up to k{i}
                expected["jobs"][f"k{i}"]["n"] = -i
            assert len(rebuilt) == 1
            assert_reaped(rebuilt[0])
            data = (info.path / TREE).read_bytes()
            assert data == _STRICT.dumps(expected)
            await checkpoints.load(info.path)
            assert state._core.tree.root == expected
            await state.stop()


async def test_a_checkpoint_whose_rebuild_fails_is_forked(
    tmp_path, monkeypatch, caplog
):
    from stateward import Checkpoints
    from stateward.actors.persistence import _fork

    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(_compact, "_CODE", "import sys; sys.exit(3)")
    monkeypatch.setattr(_snapshots, "REPLAY_FROM_BYTES", 0)
    monkeypatch.setattr(_fork, "copy_budget", _fork.COPY_AT_LEAST)  # a fork is cheap
    forked = spy_forks(monkeypatch, _fork, "start")
    config = PersistenceConfig(str(tmp_path / "state"), "fsync")
    big = {f"k{i}": i for i in range(3_000)}  # more than is always copied
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            state = await tg.start(StateActor(initial=big, persistence=config).run)
            await state.send(Set("k0", -1))
            info = await Checkpoints(state, tmp_path / "cp").save()
            assert info.revision == 1
            assert len(forked) == 1
            assert "tried again next time" in caplog.text
            assert state._core.persister.snapshots.rebuild_failures == 1
            await state.send(Set("k1", -1))
            await Checkpoints(state, tmp_path / "cp").load(info.path)
            assert await state.get("k0") == -1
            assert await state.get("k1") == 1
            await state.stop()


async def test_files_a_checkpoint_rebuild_reads_outlive_a_snapshot_meanwhile(
    tmp_path, monkeypatch
):
    # keep_snapshots=1: the snapshot written while a checkpoint's process is
    # still to read the older snapshot and journal must not remove them.
    # The process is held before it lists the files, reading the FIFO "go"
    # until the test opens and closes it (the snapshots' own processes are
    # not held).
    from stateward import CheckpointInfo, Checkpoints
    from stateward.actors._checkpoint_files import TREE
    from stateward.actors.persistence import _fork

    go = tmp_path / "go"
    os.mkfifo(go)
    hold = (
        "import sys\n"
        "if sys.argv[4:] == ['checkpoint']:\n"
        f"    open({str(go)!r}, 'rb').read()\n"
    )
    monkeypatch.setattr(_compact, "_CODE", hold + _compact._CODE)
    monkeypatch.setattr(_snapshots, "REPLAY_FROM_BYTES", 0)
    forked = spy_forks(monkeypatch, _fork, "start")
    _no_fork(monkeypatch)
    spawned = anyio.Event()
    real_spawn = _snapshots.spawn_rebuild

    def spawn(directory: str, revision: int, **how: bool) -> ForkedBody | None:
        if how.get("checkpoint"):
            spawned.set()
        return real_spawn(directory, revision, **how)

    monkeypatch.setattr(_snapshots, "spawn_rebuild", spawn)
    directory = tmp_path / "state"
    config = PersistenceConfig(
        str(directory), "none", snapshot_every=5, keep_snapshots=1
    )
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            state = await tg.start(StateActor(initial={}, persistence=config).run)
            snapshots = state._core.persister.snapshots

            async def send(first: int, last: int) -> None:
                for i in range(first, last + 1):
                    await state.send(Set(f"k{i}", i))  # revision i
                await snapshots.idle.wait()

            await send(1, 7)
            assert sorted(snapshot_files(directory)) == [5]
            saved: list[CheckpointInfo] = []
            done = anyio.Event()

            async def save() -> None:
                saved.append(await Checkpoints(state, tmp_path / "cp").save())
                done.set()

            tg.start_soon(save)
            await spawned.wait()
            await send(8, 12)  # the snapshot of revision 10, written
            assert snapshots.count == 2
            assert sorted(snapshot_files(directory)) == [5, 10]  # 5 kept
            await anyio.to_thread.run_sync(
                lambda: open(go, "wb").close(),  # (once the process reads it)
                abandon_on_cancel=True,
            )
            await done.wait()
            info = saved[0]
            assert info.revision == 7
            assert forked == []  # the rebuild did it
            assert snapshots.rebuild_failures == 0
            tree = json.loads((info.path / TREE).read_bytes())
            assert tree == {f"k{i}": i for i in range(1, 8)}
            await send(13, 15)  # the next snapshot's retention catches up
            assert sorted(snapshot_files(directory)) == [15]
            await state.stop()


def test_a_run_of_digits_is_found_across_the_chunks_it_is_read_in():
    from stateward.actors.persistence._snapshot import _CHUNK, _long_numbers

    for at in (0, _CHUNK - 19, _CHUNK - 10, _CHUNK - 1, 2 * _CHUNK - 5):
        body = b'{"a":"' + b"x" * at + b"1234567890123456789" + b'"}'
        assert _long_numbers(body), at
        assert not _long_numbers(
            body.replace(b"1234567890123456789", b"12345678.0123456789")
        )


async def test_a_retention_that_fails_is_caught_up_by_the_next_one(tmp_path, caplog):
    # The snapshot is written and counted; the older files stay, with a
    # warning, until the next snapshot's retention removes them.
    import errno

    caplog.set_level(logging.WARNING)

    class RetentionFailsOnce(Files):
        failed = False

        def unlink(self, path: str) -> None:
            if path.endswith(".snap") and not self.failed:  # (not a temp file)
                self.failed = True
                raise OSError(errno.EIO, "injected", path)
            super().unlink(path)

    config = PersistenceConfig(
        str(tmp_path), "none", snapshot_every=5, keep_snapshots=1
    )
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            state = await tg.start(StateActor(initial={}, persistence=config).run)
            persister = state._core.persister
            persister.journal.files = RetentionFailsOnce()
            for i in range(1, 11):
                await state.send(Set("n", i))  # revision i
                if i % 5 == 0:
                    await persister.snapshots.idle.wait()
                if i == 5:
                    assert persister.snapshots.count == 1
                    assert sorted(snapshot_files(tmp_path)) == [0, 5]
                    assert "could not be removed" in caplog.text
            assert sorted(snapshot_files(tmp_path)) == [10]
            await state.stop()
