"""A large checkpoint loaded in a process of its own, the event loop timed.

Usage: python load_child.py DIRECTORY BACKEND LEAVES

Prints "<longest stop of the loop> <seconds the load took>". Run apart so
that the large heap it leaves (freed memory the allocator keeps) does not
slow the forks of the tests after it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import anyio
import anyio.lowlevel

from stateward import Checkpoints, Set, open_state


async def main(directory: Path, leaves: int) -> None:
    tree = {"jobs": {f"k{i}": {"n": i} for i in range(leaves)}}
    async with open_state(tree, state_dir=directory / "state") as state:
        del tree
        cp = Checkpoints(state, directory / "checkpoints")
        info = await cp.save()
        await state.send(Set("jobs.k1.n", -1))
        longest = 0.0
        loading = True

        async def tick() -> None:
            nonlocal longest
            last = time.perf_counter()
            while loading:
                await anyio.lowlevel.checkpoint()
                now = time.perf_counter()
                longest = max(longest, now - last)
                last = now

        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            await anyio.lowlevel.checkpoint()
            start = time.perf_counter()
            await cp.load(info.path)
            took = time.perf_counter() - start
            loading = False
        assert await state.get("jobs.k1.n") == 1
    print(longest, took)


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]), int(sys.argv[3]), backend=sys.argv[2])
