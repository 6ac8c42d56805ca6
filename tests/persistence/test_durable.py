"""The persisted state actor: durable sends, group commit, reopen, fail-stop, lock."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import threading
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest
import trio
import trio.lowlevel
import trio.testing

from stateward import (
    RAS,
    DurabilityError,
    InvalidActionError,
    Merge,
    PersistenceConfig,
    Ping,
    Set,
    StateActor,
    StateLockedError,
    Transaction,
    open_state,
)
from stateward.actors._files import Files

from .frozenclock import settle

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


async def test_durable_writes_survive_reopen(tmp_path: Path) -> None:
    async with open_state({"job": {"bins": 10}}, state_dir=tmp_path) as state:
        receipt = await state.send(Set("job.sorted", 5), durable=True)
        assert receipt.revision == 1
        await state.send(
            Transaction([Set("a", [1]), Set("a.1", 2), Merge("job", {"x": 1})])
        )
        await state.send(Ping("job"))  # a revision without a change: still journaled
        assert state.statistics().durable_revision == 3
    async with open_state({"ignored": True}, state_dir=tmp_path) as state:
        assert state.revision == 3
        assert await state.get() == {
            "job": {"bins": 10, "sorted": 5, "x": 1},
            "a": [1, 2],
        }


async def test_reopen_replays_the_journal_without_a_clean_stop(tmp_path: Path) -> None:
    # Cancel the actor (no final snapshot): the journal alone carries the writes.
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            state = await tg.start(
                StateActor(persistence=PersistenceConfig(str(tmp_path))).run
            )
            for i in range(50):
                await state.send(Set(f"k.{i}", i))
            scope.cancel()
    snapshots = [n for n in os.listdir(tmp_path) if n.startswith("snapshot-")]
    assert snapshots == ["snapshot-00000000000000000000.snap"]
    async with open_state(state_dir=tmp_path) as state:
        assert state.revision == 50
        assert await state.get("k") == {str(i): i for i in range(50)}


async def test_durable_sends_never_wait_behind_the_applications_threads(
    tmp_path: Path,
) -> None:
    # Every token of anyio's default thread limiter taken by the application:
    # the journal has tokens of its own, so durable sends and reads go on.
    release = threading.Event()
    limiter = anyio.to_thread.current_default_thread_limiter()
    async with open_state(state_dir=tmp_path, snapshot_every=3) as state:
        async with anyio.create_task_group() as tg:
            for _ in range(int(limiter.total_tokens)):
                tg.start_soon(anyio.to_thread.run_sync, release.wait)
            await anyio.wait_all_tasks_blocked()
            assert limiter.available_tokens == 0
            try:
                with anyio.fail_after(10):
                    for i in range(10):  # through snapshots and rotations too
                        receipt = await state.send(Set("a", i), durable=True)
                    assert await state.get("a") == 9
            finally:
                release.set()
        assert receipt.revision == 10


async def test_concurrent_durable_senders_share_fsyncs(tmp_path: Path) -> None:
    async with open_state(state_dir=tmp_path) as state:
        async with anyio.create_task_group() as tg:
            for w in range(50):
                tg.start_soon(state.send, Set(f"w.{w}", w))
        stats = state.statistics()
        assert stats.revision == 50
        assert stats.journal_fsyncs < 50, stats  # group commit: fewer fsyncs than sends


async def test_events_wait_for_the_record(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []

    async with open_state(state_dir=tmp_path) as state:

        async def handler(event: object) -> int:
            # When an event arrives, its revision is already committed.
            seen.append((event.revision, state.statistics().durable_revision))  # type: ignore[attr-defined]
            return RAS.SUCCESS

        await state.subscribe("k", handler, name="h")
        for i in range(20):
            receipt = await state.send(Set("k", i), durable=False)
        report = await receipt.acks(timeout=5)
        assert report.ok
    assert len(seen) == 20
    assert all(durable >= revision for revision, durable in seen)


async def test_a_full_block_mailbox_never_holds_back_durable_receipts(
    tmp_path: Path,
) -> None:
    """After a commit: the events that fit, then the senders, then the rest."""
    gate = anyio.Event()

    async def slow(event: object) -> None:
        await gate.wait()

    async def send(i: int) -> None:
        await state.send(Set(f"n{i}", i), durable=True)

    async with open_state(state_dir=tmp_path) as state:
        await state.subscribe("", slow, name="slow", mailbox_size=1, block_timeout=3600)
        with anyio.fail_after(10):  # the senders would wait for the gate
            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(send, i)
        assert state.statistics().durable_revision == 4
        gate.set()


async def test_snapshots_rotate_and_retention_keeps_k(tmp_path: Path) -> None:
    async with open_state(
        state_dir=tmp_path, snapshot_every=10, keep_snapshots=2
    ) as state:
        for i in range(95):
            await state.send(Set("n", i))
    names = sorted(os.listdir(tmp_path))
    snapshots = [n for n in names if n.startswith("snapshot-")]
    assert len(snapshots) == 2
    assert snapshots[-1] == "snapshot-00000000000000000095.snap"
    assert not [n for n in names if n.endswith(".tmp")]
    async with open_state(state_dir=tmp_path) as state:
        assert await state.get("n") == 94


@pytest.mark.parametrize(
    "anyio_backend", [("trio", {"clock": trio.testing.MockClock()})]
)
async def test_snapshot_interval_snapshots_changes_older_than_it(
    tmp_path: Path,
) -> None:
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, trio.testing.MockClock)
    async with open_state(
        state_dir=tmp_path, snapshot_every=10_000, snapshot_interval=60
    ) as state:
        await state.send(Set("n", 1))
        await settle()
        assert state.statistics().snapshots == 0
        clock.jump(59.9)
        await state.send(Set("n", 2))
        await settle()
        assert state.statistics().snapshots == 0  # not before its time
        clock.jump(0.1)
        await state.send(Set("n", 3))
        await settle()
        assert state.statistics().snapshots == 1
        assert "snapshot-00000000000000000003.snap" in os.listdir(tmp_path)
        clock.jump(600)
        await settle()
        assert state.statistics().snapshots == 1  # idle: nothing new to snapshot
        await state.send(Set("n", 4))
        await settle()
        assert state.statistics().snapshots == 2
    with pytest.raises(InvalidActionError, match="snapshot_interval"):
        PersistenceConfig(str(tmp_path), snapshot_interval=0)
    for bad in (0, -1, "10", float("nan")):
        with pytest.raises(InvalidActionError, match="snapshot_timeout"):
            PersistenceConfig(str(tmp_path), snapshot_timeout=bad)
    assert PersistenceConfig(str(tmp_path)).snapshot_timeout == 600
    assert (
        PersistenceConfig(str(tmp_path), snapshot_timeout=None).snapshot_timeout is None
    )


async def test_durability_modes_decide_what_a_send_waits_for(tmp_path: Path) -> None:
    # "none": no fsync unless a send asks; durable=True forces one.
    async with open_state(state_dir=tmp_path / "none", durability="none") as state:
        for i in range(10):
            await state.send(Set("n", i))
        assert state.statistics().journal_fsyncs == 0
        assert await state.get("n") == 9  # get() waits for the write, not an fsync
        await state.send(Set("n", 10), durable=True)
        assert state.statistics().journal_fsyncs == 1
    # "flush": every send waits for the write, none for an fsync.
    async with open_state(state_dir=tmp_path / "flush", durability="flush") as state:
        for i in range(10):
            receipt = await state.send(Set("n", i))
            assert state.statistics().durable_revision >= receipt.revision  # type: ignore[operator]
        assert state.statistics().journal_fsyncs == 0
    for mode in ("none", "flush"):
        async with open_state(state_dir=tmp_path / mode) as state:
            assert await state.get("n") == (10 if mode == "none" else 9)
        assert os.stat(tmp_path / mode).st_mode & 0o777 == 0o700


async def test_bad_options_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidActionError):
        PersistenceConfig(str(tmp_path), durability="always")  # type: ignore[arg-type]
    with pytest.raises(InvalidActionError):
        PersistenceConfig(str(tmp_path), keep_snapshots=0)
    for every in (0, -1, 1.5, True, "10"):
        with pytest.raises(InvalidActionError, match="snapshot_every"):
            PersistenceConfig(str(tmp_path), snapshot_every=every)  # type: ignore[arg-type]
    assert PersistenceConfig(str(tmp_path)).snapshot_every is None  # adaptive
    with pytest.raises(InvalidActionError):
        PersistenceConfig("")
    async with open_state() as state:
        with pytest.raises(InvalidActionError, match="not persisted"):
            await state.send(Set("a", 1), durable=True)


async def test_a_second_open_of_the_same_directory_fails_at_once(
    tmp_path: Path,
) -> None:
    async with open_state(state_dir=tmp_path):
        with anyio.fail_after(1), pytest.raises(StateLockedError):
            async with open_state(state_dir=tmp_path):
                pass


def test_a_second_process_fails_at_once_100_of_100(tmp_path: Path) -> None:
    """D7: a second process opening the directory fails fast and clearly."""
    script = textwrap.dedent(
        f"""
        import anyio
        from stateward import StateLockedError, open_state
        async def main():
            failures = 0
            for _ in range(100):
                try:
                    with anyio.fail_after(1):  # fails at once, never waits
                        async with open_state(state_dir={str(tmp_path)!r}):
                            pass
                except StateLockedError as exc:
                    assert "in use" in str(exc)
                    failures += 1
            print(failures)
        anyio.run(main)
        """
    )

    async def hold() -> str:
        async with open_state(state_dir=tmp_path):
            result = await anyio.to_thread.run_sync(
                lambda: subprocess.run(
                    [sys.executable, "-c", script],
                    capture_output=True,
                    text=True,
                    check=True,
                )
            )
        return result.stdout.strip()

    assert anyio.run(hold) == "100"
    mode = os.stat(tmp_path / "LOCK").st_mode & 0o777
    assert mode == 0o600


class _FailingFiles(Files):
    """Fails the N-th fsync (or write) with EIO or ENOSPC, then keeps failing."""

    def __init__(self, fail_at: int, op: str, code: int = errno.EIO) -> None:
        self.fail_at = fail_at
        self.op = op
        self.code = code
        self.calls = 0

    def _maybe_fail(self, op: str) -> None:
        if op == self.op:
            self.calls += 1
            if self.calls >= self.fail_at:
                raise OSError(self.code, os.strerror(self.code))

    def fsync(self, fd: int) -> None:
        self._maybe_fail("fsync")
        super().fsync(fd)

    def write(self, fd: int, data: bytes) -> None:
        self._maybe_fail("write")
        super().write(fd, data)


class _HeldFiles(Files):
    """Holds every fsync, while ``hold`` is set, until ``release`` is."""

    def __init__(self) -> None:
        self.hold = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def fsync(self, fd: int) -> None:
        if self.hold:
            self.entered.set()
            self.release.wait(30)
        super().fsync(fd)


async def test_cancelled_after_the_actor_took_it_is_applied_whole(
    tmp_path: Path,
) -> None:
    """Point 3 of cancelling a send: the actor has taken and applied the action
    and the sender waits for its fsync. Cancelled then, the action stays,
    whole, and reaches the disk."""
    files = _HeldFiles()
    config = PersistenceConfig(str(tmp_path), files=files)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            state = await tg.start(StateActor(persistence=config).run)
            files.hold = True
            with anyio.CancelScope() as scope:

                async def cancel_once_held() -> None:
                    await anyio.to_thread.run_sync(files.entered.wait, 30)
                    scope.cancel()

                tg.start_soon(cancel_once_held)
                pair = Transaction([Set("x", 1), Set("y", 1)])
                await state.send(pair, durable=True)
            assert scope.cancelled_caught
            files.hold = False
            files.release.set()
            assert await state.wait_durable() == 1
            assert await state.get() == {"x": 1, "y": 1}
            await state.stop()
        async with open_state(state_dir=tmp_path) as reopened:
            assert await reopened.get() == {"x": 1, "y": 1}


@pytest.mark.parametrize("op", ["fsync", "write"])
async def test_injected_errors_fail_stop_100_times(tmp_path: Path, op: str) -> None:
    """D6: never an ack after a failed write/fsync; nothing accepted until reopened."""
    injections = 0
    for trial in range(50):
        state_dir = tmp_path / f"t{trial}"
        # The first few fsyncs/writes belong to creating the store.
        files = _FailingFiles(
            4 + trial % 17, op, errno.ENOSPC if trial % 2 else errno.EIO
        )
        config = PersistenceConfig(str(state_dir), files=files, snapshot_every=5)
        acked: list[int] = []
        async with anyio.create_task_group() as tg:
            state = await tg.start(StateActor(persistence=config).run)
            failed = False
            for i in range(40):
                try:
                    await state.send(Set(f"k.{i}", i), durable=True)
                except DurabilityError:
                    failed = True
                    break
                acked.append(i)
            assert failed, "the injected error never surfaced"
            injections += 1
            with pytest.raises(DurabilityError):
                await state.send(Set("after", 1))
            with pytest.raises(DurabilityError):
                await state.get("k")
            await state.stop()
        async with open_state(state_dir=state_dir) as reopened:
            got = await reopened.get("k", {})
        assert isinstance(got, dict)
        # Every acknowledged write is there, and what is there is a prefix.
        assert set(got) >= {str(i) for i in acked}
        assert sorted(map(int, got)) == list(range(len(got)))
    assert injections == 50


def _inspect(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stateward.cli", "inspect", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_stateward_inspect_shows_files_and_rebuilds_a_revision(tmp_path: Path) -> None:
    async def fill() -> None:
        async with open_state({"a": 1}, state_dir=tmp_path) as state:
            for i in range(7):
                await state.send(Set("n", i))

    anyio.run(fill)
    before = sorted(os.listdir(tmp_path))

    done = _inspect(str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "snapshot-00000000000000000000.snap  revision 0" in done.stdout
    assert (
        "journal-00000000000000000001.wal  revisions 1..7  7 records  ok" in done.stdout
    )
    assert "revisions on disk: 0..7" in done.stdout
    assert done.stdout.rstrip().endswith('{\n  "a": 1,\n  "n": 6\n}')
    at_two = _inspect(str(tmp_path), "--revision", "2")
    assert at_two.stdout.rstrip().endswith('{\n  "a": 1,\n  "n": 1\n}')
    assert _inspect(str(tmp_path), "--revision", "99").returncode == 1
    missing = _inspect(str(tmp_path / "nope"))
    assert missing.returncode == 1
    assert "nope: no such directory, not a state directory" in missing.stderr
    a_file = _inspect(str(tmp_path / before[0]))
    assert a_file.returncode == 1
    assert ": a file, not a state directory" in a_file.stderr
    assert sorted(os.listdir(tmp_path)) == before  # read-only


def test_stateward_inspect_shows_a_path_a_summary_or_json(tmp_path: Path) -> None:
    async def fill() -> None:
        async with open_state({}, state_dir=tmp_path / "s") as state:
            await state.send(Set("jobs.build", {"status": "ok", "n": 3}))
            await state.send(Set("jobs.test", [1, 2, 3]))

    anyio.run(fill)

    state_dir = str(tmp_path / "s")
    one = _inspect(state_dir, "jobs.build")
    assert one.returncode == 0, one.stderr
    assert one.stdout.rstrip().endswith('{\n  "status": "ok",\n  "n": 3\n}')
    summary = _inspect(state_dir, "--summary")
    assert "jobs  object, 2 children, 5 leaves" in summary.stdout
    assert "test  array, 3 children, 3 leaves, 9 bytes" in summary.stdout  # [1, 2, 3]
    report = json.loads(_inspect(state_dir, "jobs", "--json").stdout)
    assert report["revision"] == 2
    assert report["value"]["test"] == [1, 2, 3]
    assert report["segments"][0]["records"] == 2
    assert "2 records" in _inspect(state_dir).stdout
    missing = _inspect(state_dir, "jobs.nope")
    assert missing.returncode == 1
    assert "'jobs.nope' does not exist at revision 2" in missing.stderr
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hello")
    plain = _inspect(str(tmp_path / "plain"))
    assert plain.returncode == 1
    assert "is not a state directory" in plain.stderr


def _journal_to_replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state directory of 100 records no snapshot holds, reported every 30."""
    import shutil

    from stateward.actors.persistence import _recovery

    monkeypatch.setattr(_recovery, "PROGRESS_EVERY", 30)  # (50,000 by default)
    copy = tmp_path / "copy"

    async def fill() -> None:
        async with open_state({}, state_dir=tmp_path / "s") as state:
            for i in range(100):
                await state.send(Set("n", i))
            # A copy of the live directory: as after a crash, the journal
            # holds what no snapshot does.
            shutil.copytree(tmp_path / "s", copy, ignore=shutil.ignore_patterns("LOCK"))

    anyio.run(fill)
    return copy


def test_recovery_reports_its_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = _journal_to_replay(tmp_path, monkeypatch)
    seen = []

    async def reopen() -> None:
        async with open_state(
            {}, state_dir=copy, on_recovery_progress=seen.append
        ) as state:
            assert await state.get("n") == 99

    anyio.run(reopen)
    assert seen
    last = seen[-1]
    assert (last.records, last.revision) == (100, 100)
    assert last.bytes_done == last.bytes_total > 0
    assert [p.bytes_done for p in seen] == sorted(p.bytes_done for p in seen)
    # every 30 records on the way, and after each segment
    assert [p.records for p in seen if p.bytes_done < p.bytes_total] == [30, 60, 90]


def test_inspection_reports_its_progress(tmp_path: Path, monkeypatch, capsys) -> None:
    from stateward import _cli_inspect
    from stateward.actors.persistence import _replay, inspect_directory

    async def fill() -> None:
        async with open_state({}, state_dir=tmp_path) as state:
            for i in range(100):
                await state.send(Set("n", i))

    anyio.run(fill)
    monkeypatch.setattr(_replay, "PROGRESS_EVERY", 30)
    seen = []
    assert inspect_directory(str(tmp_path), 95, on_progress=seen.append).tree == {
        "n": 94
    }
    assert [(p.records, p.revision) for p in seen] == [
        (30, 30),
        (60, 60),
        (90, 90),
        (95, 95),
    ]
    assert [p.bytes_done for p in seen] == sorted(p.bytes_done for p in seen)
    assert seen[-1].bytes_done == seen[-1].bytes_total > 0
    seen.clear()  # a multiple of the step: its end is reported once
    inspect_directory(str(tmp_path), 90, on_progress=seen.append)
    assert [p.records for p in seen] == [30, 60, 90]
    # stateward inspect shows it on a terminal (and only there).
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert _cli_inspect.inspect_command(str(tmp_path), 95) == 0
    err = capsys.readouterr().err
    assert err.endswith("100% of the journal, 95 records, revision 95\n")
    assert _cli_inspect.inspect_command(str(tmp_path), None) == 0
    assert capsys.readouterr().err == ""  # the final snapshot: nothing replayed


@pytest.mark.parametrize("exc", [ValueError("display gone"), GeneratorExit()])
def test_a_progress_callback_that_raises_never_stops_recovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog, exc
) -> None:
    # It once ended the recovery: open_state raised the callback's error and
    # the acknowledged state could not be opened while it was passed.
    copy = _journal_to_replay(tmp_path, monkeypatch)
    calls = []

    def broken(progress: object) -> None:
        calls.append(progress)
        raise exc

    async def reopen() -> None:
        async with open_state({}, state_dir=copy, on_recovery_progress=broken) as state:
            assert await state.get("n") == 99

    anyio.run(reopen)
    assert len(calls) == 1  # not called again
    assert "recovery progress callback" in caplog.text
    assert type(exc).__name__ in caplog.text
