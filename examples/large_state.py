"""A large persisted state keeps taking writes while its snapshots are made.

Run: python examples/large_state.py [LEAVES]   (default 200,000)

A snapshot of a tree this large is rebuilt from the state directory by a new
process (``snapshot_child="auto"``, the default), so the state does not even
pause for a fork; ``snapshot_child="fork"`` is printed beside it to compare.
Either way, every write is there after a restart.
"""

from __future__ import annotations

import sys
import tempfile
import time
from typing import Literal

import anyio

from stateward import PersistenceConfig, Set, StateActor, open_state

WRITES = 10_000


async def writes(
    leaves: int, directory: str, child: Literal["auto", "fork"]
) -> tuple[float, int]:
    """The longest of WRITES sends, and the snapshots the state took."""
    config = PersistenceConfig(
        directory,
        durability="none",  # (so that the disk does not hide the state)
        snapshot_every=2_000,
        snapshot_child=child,
    )
    initial = {"jobs": {f"k{i}": {"n": 0} for i in range(leaves)}}
    longest = 0.0
    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor(initial=initial, persistence=config).run)
        del initial  # the state has its own copy
        for i in range(WRITES):
            start = time.perf_counter()
            await state.send(Set(f"jobs.k{i * 7919 % leaves}.n", i + 1))
            longest = max(longest, time.perf_counter() - start)
        await state.stop()  # waits for a snapshot under way, then takes one
    return longest, state.statistics().snapshots


async def main(leaves: int) -> None:
    children: tuple[Literal["auto", "fork"], ...] = ("auto", "fork")
    for child in children:
        with tempfile.TemporaryDirectory() as directory:
            longest, snapshots = await writes(leaves, directory, child)
            print(
                f"{child}: {WRITES:,} writes to {leaves:,} leaves, "
                f"{snapshots} snapshots, the longest write {longest * 1e3:.1f} ms"
            )
            async with open_state(state_dir=directory) as state:  # a restart
                jobs = await state.get("jobs")
                assert isinstance(jobs, dict)
                last = {i * 7919 % leaves: i + 1 for i in range(WRITES)}
                kept = all(jobs[f"k{k}"] == {"n": n} for k, n in last.items())
                print(f"{child}: after a restart, every write is there: {kept}")


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
