"""D5: a real full disk (a 1 MiB tmpfs), filled and freed 50 times.

Skipped, with the reason, only where mounting is refused (not root, no tmpfs)
and never in CI (CI=true: .ci/run provides the mount command and root, and a
refusal fails the test). Everything else is real: the kernel's ENOSPC, short
writes, a snapshot that does not fit.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import subprocess
from typing import TYPE_CHECKING

import anyio
import pytest
from needs import unavailable

from stateward import (
    Delete,
    DurabilityError,
    PersistenceConfig,
    Set,
    StateActor,
    StateDirectoryError,
    Store,
    open_state,
)
from stateward.actors.persistence import parse_snapshot

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.anyio

ROUNDS = 50
KEYS = 10


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", mount_point],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except FileNotFoundError:
        unavailable("D5 needs a 1 MiB tmpfs: no mount command (Debian package 'mount')")
    if done.returncode != 0:
        unavailable(
            f"D5 needs a 1 MiB tmpfs; mounting it was refused: {done.stderr.strip()}"
        )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", mount_point], check=False, timeout=30)


def _assert_enospc(cause: BaseException | None) -> None:
    """The refused write's DurabilityError was caused by the full disk."""
    assert isinstance(cause, OSError)
    assert cause.errno == errno.ENOSPC


def _sizes(disk: Path) -> dict[str, int]:
    return {
        str(path.relative_to(disk)): path.stat().st_size
        for path in disk.rglob("*")
        if path.is_file()
    }


def _fill(disk: Path, leave: int) -> None:
    """Take all the free space of *disk* but about *leave* bytes."""
    stat = os.statvfs(disk)
    size = max(0, stat.f_bavail * stat.f_frsize - leave)
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        chunk = b"\0" * 65536
        while size > 0:
            try:
                size -= os.write(fd, chunk[: min(size, len(chunk))])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    finally:
        os.close(fd)


async def test_enospc_is_never_acknowledged_and_loses_nothing(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """D5: the write that hit ENOSPC fails typed, nothing acknowledged is lost."""
    caplog.set_level(logging.WARNING, "stateward")
    rng = random.Random(5)
    state_dir = small_disk / "state"
    acked: dict[str, str] = {}  # the model: every acknowledged write
    failed_write: tuple[str, str] | None = None
    refused = 0
    for round_ in range(ROUNDS):
        config = PersistenceConfig(
            str(state_dir), snapshot_every=rng.choice([3, 5, 8]), keep_snapshots=2
        )
        async with anyio.create_task_group() as tg:
            try:
                state = await tg.start(StateActor(persistence=config).run)
            except StateDirectoryError:  # (the filler is gone: say what is not)
                free = os.statvfs(small_disk)
                pytest.fail(
                    f"round {round_}: reopening failed with "
                    f"{free.f_bavail * free.f_frsize} bytes free; on the disk: "
                    f"{_sizes(small_disk)}"
                )
            # Reopened after a full disk: every acknowledged write is there,
            # and the refused one at most in addition (it was never acked).
            got = await state.get("", {})
            assert isinstance(got, dict)
            allowed = [acked]
            if failed_write is not None:
                allowed.append({**acked, failed_write[0]: failed_write[1]})
            assert got in allowed, f"round {round_}: acknowledged writes lost"
            acked = dict(got)
            # Overwrites alone reach a steady size (retention frees as fast as
            # the journal grows): new keys make the tree, and so the snapshots,
            # grow until the disk is full.
            for key in [k for k in acked if k.startswith("new")]:
                await state.send(Delete(key), durable=True)
                del acked[key]
            # A snapshot taken meanwhile is written (and retention frees the
            # journal it covers) before the disk is filled, however long its
            # forked child takes: in a large process (after a test of a large
            # state) it took long enough to meet the filler every round, and
            # the journal grew until the state could not be opened.
            await state._core.persister.snapshots.idle.wait()
            _fill(small_disk, leave=rng.randrange(4096, 96 * 1024))
            for i in range(2000):
                key = f"k{rng.randrange(KEYS)}" if i % 2 else f"new{i}"
                value = f"{round_}.{i}:" + "x" * rng.randrange(200, 4000)
                try:
                    await state.send(Set(key, value), durable=True)
                except DurabilityError as exc:
                    cause = exc.__cause__
                    failed_write = (key, value)
                    break
                acked[key] = value
            else:
                pytest.fail(f"round {round_}: the disk never filled")
            _assert_enospc(cause)
            refused += 1
            with pytest.raises(DurabilityError):  # fail-stop until reopened
                await state.send(Set("after", 1), durable=True)
            await state.stop()
        names = os.listdir(state_dir)
        assert not [n for n in names if n.endswith(".tmp")], names
        snapshots = sorted(n for n in names if n.endswith(".snap"))
        assert snapshots, "no snapshot left"
        for name in snapshots:  # the previous snapshots are intact
            parse_snapshot((state_dir / name).read_bytes(), name)
        (small_disk / "filler").unlink()
    assert refused == ROUNDS
    failed_snapshots = [
        r for r in caplog.records if "snapshot of revision" in r.getMessage()
    ]
    assert failed_snapshots, "no snapshot ever hit the full disk"
    print(f"D5: {refused} refused writes, {len(failed_snapshots)} failed snapshots")
    with contextlib.suppress(FileNotFoundError):
        (small_disk / "filler").unlink()


@pytest.mark.parametrize("fresh", [False, True], ids=["existing", "new"])
async def test_opening_on_a_full_disk_fails_typed_and_loses_nothing(
    small_disk: Path, fresh: bool
) -> None:
    state_dir = small_disk / "state"
    acked: dict[str, int] = {}
    if not fresh:
        config = PersistenceConfig(str(state_dir))
        async with anyio.create_task_group() as tg:
            state = await tg.start(StateActor(persistence=config).run)
            for i in range(20):
                await state.send(Set(f"k{i}", i), durable=True)
                acked[f"k{i}"] = i
            await state.stop()
    _fill(small_disk, leave=0)
    before = sorted(os.listdir(state_dir)) if not fresh else None
    config = PersistenceConfig(str(state_dir))
    with pytest.raises(StateDirectoryError) as caught:
        async with open_state(state_dir=state_dir):
            pass
    error = caught.value
    assert isinstance(error, OSError)
    assert error.errno == errno.ENOSPC
    assert isinstance(error.__cause__, OSError)
    assert str(state_dir) in str(error)
    assert error.path == str(state_dir)
    if before is not None:  # nothing it held was removed or replaced
        assert set(before) <= set(os.listdir(state_dir))
    (small_disk / "filler").unlink()
    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor(persistence=config).run)
        assert await state.get("", {}) == acked
        await state.send(Set("after", 1), durable=True)
        await state.stop()


def test_store_writes_on_a_full_disk_lose_nothing(
    small_disk: Path, backend: str
) -> None:
    # Durable Store calls, applied in the loop's callback when the actor is
    # idle: the write that hits ENOSPC fails typed in the calling thread,
    # the state fail-stops, and every call that returned is on disk.
    rng = random.Random(7)
    state_dir = small_disk / "state"
    acked: dict[str, str] = {}
    for round_ in range(5):
        with Store(
            state_dir=state_dir, snapshot_every=5, keep_snapshots=2, backend=backend
        ) as store:
            got = store.get("", {})
            assert isinstance(got, dict)
            assert {k: got.get(k) for k in acked} == acked, f"round {round_}: lost"
            acked = dict(got)
            _fill(small_disk, leave=rng.randrange(4096, 64 * 1024))
            for i in range(2000):
                key, value = f"r{round_}k{i}", "x" * rng.randrange(200, 4000)
                try:
                    store.set(key, value)
                except DurabilityError as exc:
                    cause = exc.__cause__
                    break
                acked[key] = value
            else:
                pytest.fail(f"round {round_}: the disk never filled")
            _assert_enospc(cause)
            with pytest.raises(DurabilityError):  # fail-stop until reopened
                store.set("after", 1)
        (small_disk / "filler").unlink()
    with Store(state_dir=state_dir, backend=backend) as store:
        got = store.get("", {})
        assert isinstance(got, dict)
        assert {k: got.get(k) for k in acked} == acked
