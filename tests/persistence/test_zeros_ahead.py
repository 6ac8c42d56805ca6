"""A journal segment written ahead with zeros, where every commit is fsynced.

The records then land in blocks the file already has. The zeros after the
last record are no record and nothing torn: recovery cuts them off without
a warning, and brings back every record. Without ample room on the disk,
or without an fsync per commit, records are appended as before.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import TYPE_CHECKING

import anyio
import pytest

from stateward import Set, StateActor, open_state
from stateward.actors._files import Files, filesystem_of
from stateward.actors.persistence import PersistenceConfig, recover
from stateward.actors.persistence._format import (
    _SEGMENT_HEAD,
    _segment_header,
    encode_record,
)
from stateward.actors.persistence._journal import ZEROS_FIRST, ZEROS_MOST, ZEROS_ROOM
from stateward.actors.persistence._segments import read_segment

if TYPE_CHECKING:
    from pathlib import Path

    from stateward.actors.persistence import Journal

pytestmark = pytest.mark.anyio

SENDS = 1_500  # records of about 100 bytes: several stretches of zeros


def _last_segment(directory: Path) -> Path:
    return directory / max(n for n in os.listdir(directory) if n.startswith("journal-"))


def _size(path: Path) -> int:
    return os.path.getsize(path)


def _journal(state: object) -> Journal:
    persister = state._core.persister  # type: ignore[attr-defined]
    assert persister is not None
    journal: Journal = persister.journal
    return journal


def _recover(directory: Path) -> tuple[object, int, tuple[str, ...]]:
    recovered = recover(PersistenceConfig(str(directory)), None)
    recovered.journal.close()
    return recovered.tree.root, recovered.tree.revision, recovered.warnings


async def test_records_land_in_zeros_and_all_come_back_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state_dir, crashed = tmp_path / "state", tmp_path / "crashed"
    stretches: set[int] = set()
    async with open_state({"n": 0}, state_dir=state_dir, snapshot_every=100_000) as s:
        journal = _journal(s)
        for i in range(1, SENDS + 1):
            await s.send(Set("n", i, source="x" * 60))
            stretches.add(journal.zeroed)
            assert journal.zeroed > journal.size  # zeros ahead, always
        data = _last_segment(state_dir).read_bytes()
        zeroed = journal.zeroed
        # The files as a kill would leave them: every commit was fsynced.
        shutil.copytree(state_dir, crashed)
    assert len(data) == zeroed > journal.size > ZEROS_FIRST
    assert data.count(0, journal.size) == len(data) - journal.size
    assert len(stretches) >= 3  # written a stretch at a time, as needed
    segment = read_segment(data, "journal")
    assert segment.torn is None
    assert segment.valid_size == journal.size
    assert len(segment.payloads) == SENDS
    caplog.set_level(logging.WARNING)
    root, revision, warnings = _recover(crashed)
    assert (root, revision, warnings) == ({"n": SENDS}, SENDS, ())
    assert not caplog.records
    # Cut off: the segment ends with its last record (recovery then starts
    # the next one), and recovery is idempotent.
    assert _size(crashed / _last_segment(state_dir).name) == journal.size
    assert _recover(crashed) == (root, revision, ())


async def test_the_stretches_double_up_to_the_most_written_at_once(
    tmp_path: Path,
) -> None:
    sizes: list[int] = []
    async with open_state({}, state_dir=tmp_path, snapshot_every=100_000) as state:
        journal = _journal(state)
        before = journal.zeroed
        big = "y" * 200_000  # (one record larger than a stretch)
        for i in range(12):
            await state.send(Set(f"k{i}", big))
            if journal.zeroed != before:
                sizes.append(journal.zeroed - journal.size)
                before = journal.zeroed
    assert sizes[0] == ZEROS_FIRST
    assert max(sizes) == ZEROS_MOST
    assert _recover(tmp_path)[1] == 12


class _Filling(Files):
    """A disk whose free room falls below what zeros ahead need, on demand."""

    def __init__(self) -> None:
        self.full = False

    def free_bytes(self, directory: str) -> int:
        return ZEROS_ROOM - 1 if self.full else 10 * ZEROS_ROOM


async def test_without_room_the_records_are_appended_and_all_come_back(
    tmp_path: Path,
) -> None:
    crashed = tmp_path / "crashed"
    files = _Filling()
    config = PersistenceConfig(str(tmp_path / "s"), files=files, snapshot_every=10**5)
    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor(initial={"n": 0}, persistence=config).run)
        journal = _journal(state)
        await state.send(Set("n", 1))
        assert journal.zeroed > journal.size  # zeros ahead while there was room
        files.full = True
        for i in range(2, SENDS + 1):  # past the stretch: appended from then on
            await state.send(Set("n", i, source="x" * 60))
        assert journal.zeroed == 0
        segment = _last_segment(tmp_path / "s")
        assert _size(segment) == journal.size  # no zeros after them
        shutil.copytree(tmp_path / "s", crashed)
        await state.stop()
    assert _recover(crashed)[:2] == ({"n": SENDS}, SENDS)
    # A new segment on a disk without room: appended from the start.
    config = PersistenceConfig(str(crashed), files=files)
    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor(persistence=config).run)
        journal = _journal(state)
        assert journal.zeroed == 0
        await state.send(Set("n", -1))
        assert _size(_last_segment(crashed)) == journal.size
        await state.stop()


class _OnFilesystem(Files):
    """Files on a filesystem of the given type."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def filesystem(self, directory: str) -> str | None:
        return self.kind


@pytest.mark.parametrize("kind", ["btrfs", "zfs", "tmpfs"])
async def test_where_an_overwrite_costs_as_much_the_records_are_appended(
    tmp_path: Path, kind: str
) -> None:
    # A filesystem that copies a block on write would write the zeros and
    # then every record's block again; one in memory gains nothing.
    config = PersistenceConfig(str(tmp_path), files=_OnFilesystem(kind))
    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor(initial={"n": 0}, persistence=config).run)
        journal = _journal(state)
        for i in range(1, 201):
            await state.send(Set("n", i))
        assert journal.zeroed == 0
        assert _size(_last_segment(tmp_path)) == journal.size
        await state.stop()
    assert _recover(tmp_path)[:2] == ({"n": 200}, 200)


def test_the_filesystem_is_the_one_mounted_deepest_above_the_directory() -> None:
    mountinfo = "\n".join(
        [
            "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
            "23 22 8:2 / /home rw,relatime shared:2 - btrfs /dev/sda2 rw",
            "24 22 0:5 / /mnt/my\\040disk rw master:3 - zfs pool/data rw",
            "25 23 0:6 / /home/x rw - tmpfs tmpfs rw",
            "not a mount line",
        ]
    )
    assert filesystem_of("/", mountinfo) == "ext4"
    assert filesystem_of("/home", mountinfo) == "btrfs"
    assert filesystem_of("/home/a/state", mountinfo) == "btrfs"
    assert filesystem_of("/homework/state", mountinfo) == "ext4"
    assert filesystem_of("/mnt/my disk/state", mountinfo) == "zfs"
    assert filesystem_of("/home/x/y", mountinfo) == "tmpfs"
    assert filesystem_of("/home/a", "") is None
    # Mounted again at the same point: the last one is what is seen there.
    again = mountinfo + "\n26 22 0:7 / /home rw - xfs /dev/sdb1 rw"
    assert filesystem_of("/home/a", again) == "xfs"


def test_this_machines_filesystem_is_read(tmp_path: Path) -> None:
    kind = Files().filesystem(str(tmp_path))
    if os.path.exists("/proc/self/mountinfo"):
        assert isinstance(kind, str)
        assert kind
    else:
        assert kind is None


@pytest.mark.parametrize("durability", ["flush", "none"])
async def test_without_an_fsync_per_commit_the_records_are_appended(
    tmp_path: Path, durability: str
) -> None:
    async with open_state(
        {"n": 0},
        state_dir=tmp_path,
        durability=durability,  # type: ignore[arg-type]
    ) as state:
        journal = _journal(state)
        for i in range(100):
            await state.send(Set("n", i), durable=True)
        assert journal.zeroed == 0
        assert _size(_last_segment(tmp_path)) == journal.size


def _segment_with(records: int, tail: bytes) -> bytes:
    data = _segment_header(b"s" * 16, 1)
    for revision in range(1, records + 1):
        data += encode_record(revision, b'[["a",null,null,null]]', revision)
    return data + tail


def test_zeros_after_the_records_are_not_torn_and_anything_else_is() -> None:
    clean = _segment_with(3, b"")
    ahead = read_segment(_segment_with(3, bytes(5000)), "j")
    assert (ahead.torn, ahead.valid_size, len(ahead.payloads)) == (
        None,
        len(clean),
        3,
    )
    empty = read_segment(_segment_with(0, bytes(5000)), "j")
    assert (empty.torn, empty.valid_size, empty.payloads) == (
        None,
        _SEGMENT_HEAD.size,
        [],
    )
    # A stretch torn by a crash (its end not written as zeros): a torn tail,
    # cut as before, with a warning.
    torn = read_segment(_segment_with(3, bytes(5000) + b"\x07" * 9), "j")
    assert torn.torn is not None
    assert torn.valid_size == len(clean)
    assert len(torn.payloads) == 3


def _valid_sizes(directory: Path) -> dict[str, tuple[int, int]]:
    """Each segment's file size beside where its records end."""
    sizes = {}
    for name in sorted(os.listdir(directory)):
        if name.startswith("journal-"):
            data = (directory / name).read_bytes()
            sizes[name] = (len(data), read_segment(data, name).valid_size)
    return sizes


async def test_a_segment_that_ends_and_a_closed_state_keep_no_zeros(
    tmp_path: Path,
) -> None:
    # The zeros are for records to come: a segment that ends (a snapshot
    # begins the next) and the last one, once its state is closed, are cut
    # to their last record, so a closed state's files hold records alone.
    async with open_state(
        {"n": 0}, state_dir=tmp_path, snapshot_every=200, keep_snapshots=10
    ) as state:
        journal = _journal(state)
        for i in range(1, 1_051):
            await state.send(Set("n", i, source="x" * 60))
        await state._core.persister.snapshots.idle.wait()  # type: ignore[attr-defined]
        sizes = _valid_sizes(tmp_path)
        current = _last_segment(tmp_path).name
        assert journal.zeroed > journal.size  # the open segment: zeros ahead
        assert sizes.pop(current)[0] == journal.zeroed
        assert len(sizes) >= 3  # ended segments, each cut to its records
        assert all(size == valid for size, valid in sizes.values()), sizes
    closed = _valid_sizes(tmp_path)
    assert all(size == valid for size, valid in closed.values()), closed
    root, revision, warnings = _recover(tmp_path)
    assert (root, revision, warnings) == ({"n": 1_050}, 1_050, ())
