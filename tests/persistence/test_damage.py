"""D4: torn and corrupt files; recovery cuts torn tails, refuses corruption."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest

from stateward import ActionRejectedError, CorruptStateError, open_state
from stateward.actors.persistence import (
    _RECORD_MAGIC,
    PersistenceConfig,
    _segment_header,
    encode_record,
    read_segment,
    recover,
    segment_name,
)
from stateward.tree import Tree

from .workload import actions, apply_all

if TYPE_CHECKING:
    from pathlib import Path


def _history(state_dir: Path, count: int, snapshot_every: int) -> list[Tree]:
    """Run the real service with a seeded workload; return the model per revision."""
    todo = actions(7, count)

    async def run() -> None:
        async with open_state(
            state_dir=state_dir, snapshot_every=snapshot_every, keep_snapshots=3
        ) as state:
            for action in todo:
                with contextlib.suppress(ActionRejectedError):  # part of the mix
                    await state.send(action)
                await anyio.lowlevel.checkpoint()

    anyio.run(run)
    by_revision: dict[int, Tree] = {}
    tree = Tree({})
    by_revision[0] = Tree({})
    for action in todo:
        tree = apply_all(tree.root, tree.revision, [action])
        by_revision[tree.revision] = tree
    return [by_revision[r] for r in sorted(by_revision)]


def _recover(state_dir: Path) -> Tree:
    recovered = recover(PersistenceConfig(str(state_dir)), None)
    recovered.journal.close()
    return recovered.tree


def _segments(state_dir: Path) -> list[str]:
    return sorted(n for n in os.listdir(state_dir) if n.startswith("journal-"))


def _record_offsets(data: bytes) -> list[int]:
    offsets, start = [], 36
    while (found := data.find(_RECORD_MAGIC, start)) >= 0:
        offsets.append(found)
        start = found + 1
    return offsets


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Tree]]:
    base = tmp_path_factory.mktemp("history") / "state"
    # No snapshot during the run (every 10,000): the whole history is journal.
    models = _history(base, 120, 10_000)
    # Remove the final clean-exit snapshot so that recovery replays the journal.
    snaps = sorted(n for n in os.listdir(base) if n.startswith("snapshot-"))
    for name in snaps[1:]:
        os.unlink(base / name)
    return base, models


def _copy(history: tuple[Path, list[Tree]], tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(history[0], target)
    return target


def test_truncation_at_every_byte_of_the_last_two_records(
    history: tuple[Path, list[Tree]], tmp_path: Path
) -> None:
    models = history[1]
    source = history[0]
    segment = _segments(source)[0]
    data = (source / segment).read_bytes()
    offsets = _record_offsets(data)
    # The records end where the zeros written ahead of them begin (if any).
    end = len(data.rstrip(b"\0"))
    cuts = list(range(offsets[-2], end + 1))
    cuts += sorted({end + 1, (end + len(data)) // 2, len(data)})  # into the zeros
    cuts += list(range(36))  # into the segment header: nothing after snapshot 0
    rng = random.Random(3)
    cuts += [rng.randrange(36, end) for _ in range(1000)]
    for n, cut in enumerate(cuts):
        target = tmp_path / f"c{n}"
        shutil.copytree(source, target)
        with open(target / segment, "r+b") as f:
            f.truncate(cut)
        tree = _recover(target)
        model = models[tree.revision]
        assert tree.root == model.root, f"cut at {cut}: not a prefix"
        # Only whole records before the cut survive; the one cut is gone.
        whole = sum(1 for o in [*offsets[1:], end] if o <= cut)
        assert tree.revision == whole
        assert _recover(target).root == tree.root  # recovery is idempotent
        shutil.rmtree(target)
    print(f"D4: {len(cuts)} truncations, all recovered to a prefix")


def test_bit_flips_in_non_tail_records_are_always_detected(
    history: tuple[Path, list[Tree]], tmp_path: Path
) -> None:
    source = history[0]
    segment = _segments(source)[0]
    data = (source / segment).read_bytes()
    offsets = _record_offsets(data)
    rng = random.Random(5)
    for n in range(1000):
        target = tmp_path / f"f{n}"
        shutil.copytree(source, target)
        position = rng.randrange(0, offsets[-1])  # header or any non-tail record
        flipped = bytearray(data)
        flipped[position] ^= 1 << rng.randrange(8)
        (target / segment).write_bytes(bytes(flipped))
        with pytest.raises(CorruptStateError):
            _recover(target)
        assert os.listdir(target / "quarantine")  # kept aside for inspection
        shutil.rmtree(target)
    print("D4: 1000 flips, 1000 detected, 0 silent skips")


@pytest.mark.parametrize("damage", ["truncated", "empty", "flipped", "bad-checksum"])
def test_a_damaged_newest_snapshot_falls_back_to_the_previous(
    tmp_path: Path, damage: str
) -> None:
    state_dir = tmp_path / "state"
    models = _history(state_dir, 100, 10)
    snaps = sorted(n for n in os.listdir(state_dir) if n.startswith("snapshot-"))
    assert len(snaps) == 3
    newest = state_dir / snaps[-1]
    data = newest.read_bytes()
    if damage == "truncated":
        newest.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        newest.write_bytes(b"")
    elif damage == "flipped":
        newest.write_bytes(data[:-3] + bytes([data[-3] ^ 0x10]) + data[-2:])
    else:  # valid JSON body, wrong checksum
        newest.write_bytes(data[:44] + b"\0\0\0\0" + data[48:])
    tree = _recover(state_dir)
    assert tree.root == models[-1].root
    assert tree.revision == models[-1].revision
    assert snaps[-1] in os.listdir(state_dir / "quarantine")


def test_stray_and_temp_files_do_not_crash_recovery(
    history: tuple[Path, list[Tree]], tmp_path: Path
) -> None:
    target = _copy(history, tmp_path)
    (target / "snapshot-00000000000000000099.snap.tmp").write_bytes(b"half")
    (target / "notes.txt").write_text("hello")
    (target / "journal-xyz.wal").write_bytes(b"junk")
    (target / "snapshot-1.snap").write_bytes(b"junk")
    os.mkdir(target / "subdir")
    tree = _recover(target)
    assert tree.root == history[1][-1].root
    assert not [n for n in os.listdir(target) if n.endswith(".tmp")]


def test_a_missing_segment_is_a_gap_not_a_skip(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    _history(state_dir, 100, 10)
    snaps = sorted(n for n in os.listdir(state_dir) if n.startswith("snapshot-"))
    # Keep only the oldest snapshot; drop the first segment it needs.
    for name in snaps[1:]:
        os.unlink(state_dir / name)
    segments = _segments(state_dir)
    assert len(segments) >= 2
    os.unlink(state_dir / segments[0])
    with pytest.raises(CorruptStateError, match="missing"):
        _recover(state_dir)


def test_files_of_another_store_are_refused(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    _history(one, 30, 10_000)
    _history(two, 30, 10_000)
    first = segment_name(1)
    shutil.copyfile(two / first, one / first)
    with pytest.raises(CorruptStateError, match="another store"):
        _recover(one)


def test_journal_without_any_snapshot_is_refused(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    _history(state_dir, 10, 10_000)
    for name in os.listdir(state_dir):
        if name.startswith("snapshot-"):
            os.unlink(state_dir / name)
    with pytest.raises(CorruptStateError, match="no snapshot"):
        _recover(state_dir)


def _segment_with(records: list[bytes]) -> bytes:
    header = _segment_header(b"s" * 16, 1)
    return header + b"".join(records)


def test_a_hole_before_unsynced_records_is_a_crash_not_corruption() -> None:
    # Records 1-3 written without an fsync ("flush"): a crash kept 2 and 3
    # but not 1, whose bytes read back as zeros. Recovery keeps nothing of them.
    r1, r2, r3 = (encode_record(n, b'[["s",["k"],1]]', 0) for n in (1, 2, 3))
    data = _segment_with([b"\0" * len(r1), r2, r3])
    segment = read_segment(data, "seg")
    assert segment.records == []
    assert segment.torn is not None
    assert "hole" in segment.torn


def test_damage_before_a_record_written_after_its_sync_is_corruption() -> None:
    r1 = encode_record(1, b'[["s",["k"],1]]', 0)
    r2 = encode_record(2, b'[["s",["k"],2]]', 1)  # written once 1 was synced
    with pytest.raises(CorruptStateError, match="corruption"):
        read_segment(_segment_with([b"\0" * len(r1), r2]), "seg")
    flipped = bytearray(r1)
    flipped[-3] ^= 0x10  # not a hole: a flip, even before unsynced records
    r2_unsynced = encode_record(2, b'[["s",["k"],2]]', 0)
    with pytest.raises(CorruptStateError, match="corruption"):
        read_segment(_segment_with([bytes(flipped), r2_unsynced]), "seg")


def test_a_torn_segment_header_with_nothing_after_it_is_a_crash() -> None:
    header = bytearray(_segment_header(b"s" * 16, 1))
    header[-6:] = b"\0" * 6
    assert read_segment(bytes(header), "seg").first == -1
    with pytest.raises(CorruptStateError, match="header"):
        read_segment(bytes(header) + encode_record(1, b"[]", 0), "seg")


@pytest.mark.parametrize("order", [(1, 3), (1, 1), (2,), (1, 2, 2)])
def test_records_out_of_sequence_are_corruption(order: tuple[int, ...]) -> None:
    # Each record is whole (its checksum matches): a skipped, repeated or
    # misplaced revision is no torn write, and no replay may guess past it.
    records = [encode_record(n, b'[["s",["k"],1]]', 0) for n in order]
    with pytest.raises(CorruptStateError, match="has revision"):
        read_segment(_segment_with(records), "seg")
