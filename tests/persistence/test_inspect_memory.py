"""`inspect_directory` on a large state: one tree in memory, not one per snapshot."""

from __future__ import annotations

import os
import tracemalloc
from typing import TYPE_CHECKING

import anyio

from stateward import Set, open_state
from stateward.actors._files import Files
from stateward.actors.persistence import inspect_directory
from stateward.actors.persistence._snapshot import read_snapshot

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

LEAVES = 10_000


def _peak(fn: Callable[[], object]) -> int:
    """The most memory *fn* held at once while it ran (tracemalloc), in bytes."""
    tracemalloc.start()
    try:
        kept = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del kept
    return peak


def test_inspection_holds_one_snapshots_tree_and_the_records_after_it(
    tmp_path: Path,
) -> None:
    async def fill() -> None:
        leaves = {str(i): i for i in range(LEAVES)}
        async with open_state(
            {"leaves": leaves},
            state_dir=tmp_path,
            snapshot_every=500,
            keep_snapshots=5,
            durability="none",
        ) as state:
            for i in range(2_600):  # five snapshots of the whole tree, and more
                await state.send(Set(f"leaves.{i % LEAVES}", -i))

    anyio.run(fill)
    names = sorted(n for n in os.listdir(tmp_path) if n.startswith("snapshot-"))
    assert len(names) == 5
    newest = os.path.join(tmp_path, names[-1])
    # The baseline, same run: reading back one snapshot (its bytes and tree).
    one = _peak(lambda: read_snapshot(Files(), newest, names[-1]))
    found = inspect_directory(str(tmp_path))
    assert found.tree["leaves"]["2599"] == -2599
    assert all(status == "ok" for *_, status in found.snapshots)
    # The base's tree, the one being checked beside it, and what the replay
    # needs; holding every snapshot's tree (and every record) came to 3x.
    peak = _peak(lambda: inspect_directory(str(tmp_path)))
    assert peak < 2 * one, (peak, one)
