"""Replaying across journal segments: inspection, its gaps, recovery's progress."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

from stateward import CompactedError, CorruptStateError, Delete, Merge, Set, open_state
from stateward.actors.persistence import inspect_directory
from stateward.actors.persistence._format import segment_name, snapshot_name

from .spy import sizes_decoded

if TYPE_CHECKING:
    from pathlib import Path


def _fill(state_dir: Path) -> dict[int, Any]:
    """100 revisions, a snapshot every 40 (all kept); the tree at each one.

    Each snapshot is written before the next send, so that they are at 0,
    40, 80 (and 100, at the stop) and the segments start at 1, 41 and 81,
    however slow the machine (a snapshot due while one is under way would
    be put off).
    """
    trees: dict[int, Any] = {}

    async def fill() -> None:
        async with open_state(
            {}, state_dir=state_dir, snapshot_every=40, keep_snapshots=10
        ) as state:
            for i in range(100):
                # One-Set records (replayed inline) and others (the general way).
                if i % 10 == 3:
                    action: Any = Merge("jobs", {f"m{i}": i, "caf\u00e9": i})
                elif i % 10 == 7:
                    action = Delete(f"jobs.j{i - 1}")
                else:
                    action = Set(f"jobs.j{i}", {"n": i})
                receipt = await state.send(action)
                trees[receipt.revision] = await state.get("")
                await state._core.persister.snapshots.idle.wait()

    anyio.run(fill)
    return trees


def test_inspection_rebuilds_every_revision_across_segments(tmp_path: Path) -> None:
    trees = _fill(tmp_path)
    assert sorted(trees) == list(range(1, 101))
    names = {p.name for p in tmp_path.iterdir()}
    assert {segment_name(41), segment_name(81), snapshot_name(80)} <= names
    for revision in (1, 39, 40, 41, 79, 85, 99, 100):
        found = inspect_directory(str(tmp_path), revision)
        assert (found.revision, found.tree) == (revision, trees[revision])


def test_inspection_names_a_revision_missing_between_segments(tmp_path: Path) -> None:
    trees = _fill(tmp_path)
    # Only the first snapshot left, and the segment of revisions 41-80 lost.
    for revision in (40, 80, 100):
        (tmp_path / snapshot_name(revision)).unlink()
    (tmp_path / segment_name(41)).unlink()
    assert inspect_directory(str(tmp_path), 40).tree == trees[40]
    with pytest.raises(CorruptStateError, match="revision 41 is missing from the"):
        inspect_directory(str(tmp_path), 90)


def test_recovery_across_segments_reports_each_and_every_slice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stateward.actors.persistence import _recovery

    trees = _fill(tmp_path)
    for revision in (40, 80, 100):  # recovery replays all three segments
        (tmp_path / snapshot_name(revision)).unlink()
    monkeypatch.setattr(_recovery, "PROGRESS_EVERY", 30)  # (50,000 by default)
    seen = []

    async def reopen() -> None:
        async with open_state(
            {}, state_dir=tmp_path, on_recovery_progress=seen.append
        ) as state:
            assert await state.get("") == trees[100]

    anyio.run(reopen)
    # Every 30 records of a segment (1-40, 41-80, 81-100), and each one's end.
    assert [(p.records, p.revision) for p in seen] == [
        (30, 30),
        (40, 40),
        (70, 70),
        (80, 80),
        (100, 100),
    ]
    assert [p.bytes_done for p in seen] == sorted(p.bytes_done for p in seen)
    assert seen[-1].bytes_done == seen[-1].bytes_total > 0


def test_inspection_beside_a_retention_reads_the_directory_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A live service's retention removes the oldest snapshot and its
    # segment after inspection listed them: it starts again and shows the
    # directory as it is then, instead of failing on a vanished file.
    from stateward.actors.persistence import _replay

    trees = _fill(tmp_path)
    real = _replay.read_snapshot
    removed: list[str] = []

    def read_snapshot(files: Any, path: str, name: str, **how: bool) -> Any:
        if name == snapshot_name(0) and not removed:
            for gone in (snapshot_name(0), segment_name(1)):
                (tmp_path / gone).unlink()
                removed.append(gone)
        return real(files, path, name, **how)

    monkeypatch.setattr(_replay, "read_snapshot", read_snapshot)
    found = inspect_directory(str(tmp_path))
    assert removed == [snapshot_name(0), segment_name(1)]
    assert (found.revision, found.tree) == (100, trees[100])
    assert [name for name, *_ in found.snapshots] == [
        snapshot_name(r) for r in (40, 80, 100)
    ]
    assert found.oldest == 40


def test_inspection_gives_up_on_files_that_keep_vanishing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stateward.actors.persistence import _replay

    _fill(tmp_path)
    calls: list[str] = []

    def read_snapshot(files: Any, path: str, name: str, **how: bool) -> Any:
        calls.append(name)
        raise FileNotFoundError(path)

    monkeypatch.setattr(_replay, "read_snapshot", read_snapshot)
    with pytest.raises(FileNotFoundError):
        inspect_directory(str(tmp_path))
    assert len(calls) == _replay.INSPECT_ATTEMPTS


def test_files_replayed_beside_a_live_state_decode_the_snapshot_in_short_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In a worker thread of the state's own process (the feed, time travel):
    # one decoding call would hold the GIL, and stop the state's loop, for
    # as long as it takes.
    from stateward.actors.persistence import _snapshot, replay_files

    trees = _fill(tmp_path)
    sliced = sizes_decoded(monkeypatch, _snapshot, "decode_in_slices")
    tree, entries = replay_files(str(tmp_path), 50, 90)
    assert len(sliced) == 1
    assert (tree.revision, tree.root) == (90, trees[90])
    assert [e.revision for e in entries] == list(range(51, 91))


def _with_foreign_segment(tmp_path: Path) -> tuple[Path, dict[int, Any]]:
    """A state directory whose segment of revisions 41..80 is another store's.

    The other store's records are the same actions, so only the store ids
    tell them apart. Recovery reads only the segments after the newest
    snapshot (100), so the state still opens.
    """
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    trees = _fill(ours)
    _fill(theirs)
    layout = [segment_name(r) for r in (1, 41, 81)]
    assert sorted(p.name for p in ours.glob("journal-*")) == layout
    name = segment_name(41)
    (ours / name).write_bytes((theirs / name).read_bytes())
    return ours, trees


def test_files_replayed_refuse_another_stores_segment(tmp_path: Path) -> None:
    # A segment copied in from another state's directory is not this
    # state's history, even where its records would replay.
    from stateward.actors.persistence import replay_files

    ours, trees = _with_foreign_segment(tmp_path)
    with pytest.raises(CorruptStateError, match="belongs to another store"):
        replay_files(str(ours), 50, 90)
    # Past it, from the snapshot at 80, the replay is whole.
    tree, _ = replay_files(str(ours), 85, 95)
    assert (tree.revision, tree.root) == (95, trees[95])
    # A tree handed on from an earlier round carries its store's id.
    with pytest.raises(ValueError, match="store_id"):
        replay_files(str(ours), 95, 96, tree)


def test_files_replayed_skip_another_stores_snapshot(tmp_path: Path) -> None:
    from stateward.actors.persistence import replay_files

    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    trees = _fill(ours)
    _fill(theirs)
    name = snapshot_name(80)
    store_id = (ours / name).read_bytes()[8:24]  # (after the magic)
    (ours / name).write_bytes((theirs / name).read_bytes())
    # Given the live state's id, the snapshot at 40 is the base instead.
    tree, _ = replay_files(str(ours), 85, 90, store_id=store_id)
    assert (tree.revision, tree.root) == (90, trees[90])


def test_inspection_names_another_stores_segment_and_does_not_replay_it(
    tmp_path: Path,
) -> None:
    ours, trees = _with_foreign_segment(tmp_path)
    found = inspect_directory(str(ours))
    assert found.tree == trees[100]
    status = {name: why for name, _, _, why in found.segments}
    assert status[segment_name(41)] == "belongs to another store or is misnamed"
    assert status[segment_name(1)] == status[segment_name(81)] == "ok"
    assert inspect_directory(str(ours), 30).tree == trees[30]
    with pytest.raises(CorruptStateError, match="revision 41 is missing"):
        inspect_directory(str(ours), 60)


@pytest.mark.anyio
async def test_time_travel_does_not_read_another_stores_records(
    tmp_path: Path,
) -> None:
    ours, trees = await anyio.to_thread.run_sync(_with_foreign_segment, tmp_path)
    async with open_state({}, state_dir=ours, history=5, keep_snapshots=10) as state:
        assert await state.at_revision(30) == trees[30]
        with pytest.raises(CompactedError):
            await state.at_revision(60)
