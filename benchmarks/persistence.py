"""The persistence benchmark: durable stateward against the disk it runs on.

Measured in one run, in a temporary directory on the same file system:

(a) append + fsync of one small record at a time: the physical limit of
    one-at-a-time durability on this disk;
(b) durable ``send(Set)`` from 100 concurrent workers (group commit), and
    against the same workers sending to a state in memory;
(c) one changed leaf made durable on trees of 1,000 / 10,000 / 100,000
    leaves: ``Store.save()`` (the whole file) versus the journal
    (``Store(state_dir=...)``, one record);
(d) recovery of a 100,000-record journal (a figure, no target).

Targets: (b) >= 5x (a) and >= 0.8x the same in memory; the journal in (c)
within 1.2x between 1,000 and 100,000 leaves.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from typing import TYPE_CHECKING, Any

import anyio

from stateward import PersistenceConfig, Set, StateActor, Store
from stateward.actors.persistence import recover

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from stateward.actors.persistence import RecoveryProgress


def fsync_samples(directory: str, n: int) -> list[float]:
    """Seconds of each of *n* appends of one small record, each fsynced."""
    path = os.path.join(directory, "raw.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    record = b"x" * 64
    samples: list[float] = []
    try:
        before = time.perf_counter()
        for _ in range(n):
            os.write(fd, record)
            os.fsync(fd)
            after = time.perf_counter()
            samples.append(after - before)
            before = after
    finally:
        os.close(fd)
        os.unlink(path)
    return samples


def raw_fsync(directory: str, n: int) -> float:
    """Appends of one small record, each fsynced, per second."""
    return n / sum(fsync_samples(directory, n))


async def sends_per_second(
    n: int, workers: int, persistence: PersistenceConfig | None = None
) -> float:
    """``send(Set)`` per second from *workers* tasks; durable with *persistence*."""
    durable = None if persistence is None else True
    per = max(1, n // workers)
    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor(persistence=persistence).run)

        async def worker(w: int) -> None:
            for i in range(per):
                await state.send(Set(f"w.{w}", i), durable=durable)

        start = time.perf_counter()
        async with anyio.create_task_group() as inner:
            for w in range(workers):
                inner.start_soon(worker, w)
        elapsed = time.perf_counter() - start
        await state.stop()
    if persistence is not None:
        shutil.rmtree(persistence.state_dir)
    return per * workers / elapsed


async def durable_workers(directory: str, n: int, workers: int = 100) -> float:
    state_dir = os.path.join(directory, "workers")
    config = PersistenceConfig(state_dir, snapshot_every=1_000_000)
    return await sends_per_second(n, workers, config)


def _tree(leaves: int) -> dict[str, Any]:
    return {"items": {str(i): {"v": i} for i in range(leaves)}}


def one_leaf(directory: str, leaves: int, rounds: int) -> tuple[float, float]:
    """Seconds per durable one-leaf change: (Store.save, journal).

    The journal figure is the median of *rounds* single changes (robust to a
    stray slow fsync); the whole-file figure averages fewer rounds, since
    each one rewrites the whole tree.
    """
    path = os.path.join(directory, f"s{leaves}.json")
    saves = max(3, rounds * 1_000 // leaves)
    with Store(_tree(leaves), state_file=path) as store:
        start = time.perf_counter()
        for i in range(saves):
            store.set("items.0.v", -i - 1)
            store.save()
        whole = (time.perf_counter() - start) / saves
    os.unlink(path)
    state_dir = os.path.join(directory, f"j{leaves}")
    times: list[float] = []
    with Store(_tree(leaves), state_dir=state_dir) as store:
        for i in range(rounds):
            start = time.perf_counter()
            store.set("items.0.v", -i - 1)  # returns once fsynced
            times.append(time.perf_counter() - start)
    shutil.rmtree(state_dir)
    return whole, statistics.median(times)


async def recovery(
    directory: str,
    records: int,
    on_progress: Callable[[RecoveryProgress], object] | None = None,
) -> float:
    """Seconds to recover a journal of *records* one-Set records."""
    state_dir = os.path.join(directory, "recovery")
    config = PersistenceConfig(
        state_dir,
        snapshot_every=10 * records,
        durability="none",
        on_progress=on_progress,
    )
    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor(persistence=config).run)
        for i in range(records - 1):
            await state.send(Set(f"k.{i % 1000}", i))
        await state.send(Set("end", True), durable=True)  # waits for all before it
        tg.cancel_scope.cancel()  # no clean stop: no final snapshot
    start = time.perf_counter()
    recovered = recover(config, None)
    elapsed = time.perf_counter() - start
    recovered.journal.close()
    assert recovered.tree.revision == records
    shutil.rmtree(state_dir)
    return elapsed


def run(n: int, repeat: int, backends: list[str], quick: bool) -> Iterator[str]:
    with tempfile.TemporaryDirectory(dir=os.environ.get("STATEWARD_BENCH_DIR")) as d:
        a = max(raw_fsync(d, 200 if quick else 1000) for _ in range(repeat))
        yield (f"| - | (a) append+fsync, one record at a time | {a:,.0f}/s |")
        for backend in backends:
            b = max(
                anyio.run(durable_workers, d, n, backend=backend) for _ in range(repeat)
            )
            verdict = "meets" if b >= 5 * a else "MISSES"
            yield (
                f"| {backend} | (b) durable sends, 100 workers | {b:,.0f}/s = "
                f"{b / a:.1f}x (a) (target 5x: {verdict}) |"
            )
            m = max(
                anyio.run(sends_per_second, n, 100, backend=backend)
                for _ in range(repeat)
            )
            verdict = "meets" if b >= 0.8 * m else "MISSES"
            yield (
                f"| {backend} | (b) vs the same 100 workers in memory | {b:,.0f}/s "
                f"vs {m:,.0f}/s = {b / m:.2f}x (target >= 0.8x: {verdict}) |"
            )
        sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
        rounds = 50 if quick else 300
        journal: dict[int, float] = {}
        for leaves in sizes:
            whole, jour = min(one_leaf(d, leaves, rounds) for _ in range(repeat))
            journal[leaves] = jour
            yield (
                f"| asyncio | (c) one leaf durable, {leaves:,} leaves | Store.save() "
                f"{whole * 1e3:.2f} ms, journal {jour * 1e3:.2f} ms |"
            )
        ratio = journal[sizes[-1]] / journal[sizes[0]]
        verdict = "meets" if ratio <= 1.2 else "MISSES"
        yield (
            f"| asyncio | (c) journal {sizes[-1]:,} / {sizes[0]:,} leaves | "
            f"{ratio:.2f}x (target <= 1.2x: {verdict}) |"
        )
        records = 10_000 if quick else 100_000
        seconds = anyio.run(recovery, d, records)
        yield (
            f"| asyncio | (d) recovery of {records:,} journal records | "
            f"{seconds:.2f} s |"
        )
