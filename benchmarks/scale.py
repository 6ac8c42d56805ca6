"""The scale benchmark: a large persisted state, and what its snapshots cost.

A state of N leaves (``jobs.<k>.n``; 1,000,000, or 100,000 with --quick),
persisted with ``durability="none"`` so that the disk does not hide the
actor, and sequential sends through several snapshots. Three runs, the same
workload each, ratios within the run:

(a) snapshots off (``snapshot_every`` past the run): the baseline;
(b) the default: snapshots serialised by a forked child, ``gc.freeze()``
    after loading and after each snapshot;
(c) as before: snapshots serialised on the state actor, no freeze;
(d) the default schedule (``snapshot_every=None``): a snapshot once the
    journal since the last one is as large as it, so a big tree with small
    writes is snapshotted far less often (here: not within the run, which
    is what the row shows).

Targets for (b): the longest send <= 20 ms and <= 2x the longest of (a);
sends/s >= 0.8x (a).
"""

from __future__ import annotations

import gc
import os
import statistics
import tempfile
import time
from typing import TYPE_CHECKING

import anyio

from stateward import Set, StateActor
from stateward.actors.persistence import PersistenceConfig

if TYPE_CHECKING:
    from collections.abc import Iterator


async def _run(
    n: int, sends: int, snapshot_every: int | None, in_child: bool
) -> list[float]:
    initial = {"jobs": {f"k{i}": {"n": i} for i in range(n)}}
    disk = os.environ.get("STATEWARD_BENCH_DIR")
    with tempfile.TemporaryDirectory(dir=disk) as directory:
        config = PersistenceConfig(
            directory,
            "none",
            snapshot_every=snapshot_every,
            snapshot_in_child=in_child,
            freeze_gc=in_child,
        )
        times: list[float] = []
        async with anyio.create_task_group() as tg:
            actor = StateActor(initial=initial, persistence=config)
            del initial
            state = await tg.start(actor.run)
            for i in range(sends):
                start = time.perf_counter()
                await state.send(Set(f"jobs.k{(i * 7919) % n}.n", -i))
                times.append(time.perf_counter() - start)
            snapshots = state.statistics().snapshots
            await state.stop()
        times.append(float(snapshots))  # carried out with the times
    gc.unfreeze()
    gc.collect()
    return times


def run(backends: list[str], quick: bool) -> Iterator[str]:
    """Yield the report's rows, one figure at a time."""
    n = 100_000 if quick else 1_000_000
    sends = 10_000 if quick else 30_000
    every = sends // 4
    for backend in backends:
        results = {}
        for label, snapshot_every, in_child in (
            ("(a) snapshots off", sends * 10, True),
            ("(b) forked child + gc.freeze", every, True),
            ("(c) on the actor, no freeze", every, False),
            ("(d) the default schedule", None, True),
        ):
            times = anyio.run(_run, n, sends, snapshot_every, in_child, backend=backend)
            snapshots = int(times.pop())
            total = sum(times)
            ordered = sorted(times)
            longest = ordered[-1] * 1e3
            p999 = ordered[int(len(ordered) * 0.999)] * 1e3
            rate = len(times) / total
            results[label] = (longest, rate)
            yield (
                f"| {backend} | {label}, {n:,} leaves | longest send {longest:.1f} ms, "
                f"p99.9 {p999:.2f} ms, median {statistics.median(times) * 1e6:.0f} us, "
                f"{rate:,.0f} sends/s, {snapshots} snapshots |"
            )
        base_longest, base_rate = results["(a) snapshots off"]
        longest, rate = results["(b) forked child + gc.freeze"]
        ok = longest <= 20 and longest <= 2 * max(base_longest, 1.0)
        fast = rate / base_rate >= 0.8
        yield (
            f"| {backend} | (b) vs (a) | longest {longest:.1f} ms vs "
            f"{base_longest:.1f} ms (target <= 20 ms and <= 2x: "
            f"{'meets' if ok else 'MISSES'}); sends/s {rate / base_rate:.2f}x "
            f"(target >= 0.8x: {'meets' if fast else 'MISSES'}) |"
        )
