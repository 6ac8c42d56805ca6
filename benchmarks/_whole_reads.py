"""The scale benchmark's whole-tree reads and checkpoints: rows (g), (j), (l).

(g) ``Store.get("")`` and ``Store.save()`` while another thread calls
    ``Store.set`` without pause: how long each took, the longest ``set``
    meanwhile and the sets/s, against the same read with the tree copied
    on the state's loop (as it was before the forked child; also the way
    where fork is missing) and the longest ``set`` with nothing else going;
    and ``await state.get("")`` beside a task sending without pause.
(j) ``Checkpoints.load()`` of the persisted N-leaf tree: how long it took
    and the longest stop of the event loop meanwhile, against the same load
    made as before (the tree decoded by one call, then compared, copied
    and encoded for the journal on the state's loop).
(l) ``Checkpoints.save()`` of the persisted N-leaf tree, rebuilt from the
    files by a new process (the default for a tree this large) and forked
    (``snapshot_child="fork"``): how long each took, and the event loop's
    longest stop meanwhile.

:mod:`benchmarks.scale` runs them after its own rows.
"""

from __future__ import annotations

import contextlib
import gc
import os
import tempfile
import threading
import time
from typing import TYPE_CHECKING

import anyio

from stateward import Checkpoints, Set, StateActor, Store, open_state
from stateward.actors import _checkpoint_disk, _checkpoint_files
from stateward.actors.persistence import PersistenceConfig, _fork
from stateward.tree import Tree

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

__all__ = ["async_whole_read", "checkpoint_load", "checkpoint_save", "whole_reads"]


@contextlib.contextmanager
def _copied_on_the_loop() -> Iterator[None]:
    """Whole-tree reads as without fork: a copy on the state's loop."""
    real = _fork.start
    _fork.start = lambda root, dumps=None: None
    try:
        yield
    finally:
        _fork.start = real


def whole_reads(n: int, backend: str) -> Iterator[str]:
    """Rows (g): the Store's whole-tree reads beside a writer thread."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("STATEWARD_BENCH_DIR")) as d:
        initial = {"jobs": {f"k{i}": {"n": i} for i in range(n)}}
        path = os.path.join(d, "state.json")
        with Store(initial, state_file=path, backend=backend) as store:
            del initial
            sets: list[tuple[float, float]] = []  # (start, end) of each
            stop = threading.Event()

            def writer() -> None:
                i = 0
                while not stop.is_set():
                    start = time.perf_counter()
                    store.set("x", i)
                    sets.append((start, time.perf_counter()))
                    i += 1

            def measure(call: Callable[[], object]) -> tuple[float, float, float]:
                """How long *call* took, the longest set beside it, sets/s."""
                start = time.perf_counter()
                call()
                end = time.perf_counter()
                # Each set that overlapped the call (one may have begun before).
                stop_at = len(sets)
                while True:
                    time.sleep(0.01)  # the set under way when it ended, too
                    if len(sets) > stop_at:
                        break
                during = [(a, b) for a, b in sets if b > start and a < end]
                worst = max((b - a for a, b in during), default=end - start)
                return end - start, worst, len(during) / (end - start)

            thread = threading.Thread(target=writer)
            thread.start()
            try:
                _, alone, _ = measure(lambda: time.sleep(0.5))
                for label, call in (
                    ('Store.get("")', lambda: store.get("")),
                    ("Store.save()", store.save),
                ):
                    took, worst, rate = measure(call)
                    with _copied_on_the_loop():
                        took_c, worst_c, rate_c = measure(call)
                    yield (
                        f"| {backend} | (g) {label}, {n:,} leaves, a writer thread "
                        f"beside it | took {took * 1e3:,.0f} ms, longest set "
                        f"{worst * 1e3:.1f} ms, {rate:,.0f} sets/s; copied on the "
                        f"loop: took {took_c * 1e3:,.0f} ms, longest set "
                        f"{worst_c * 1e3:,.1f} ms, {rate_c:,.0f} sets/s; longest set "
                        f"alone {alone * 1e3:.1f} ms |"
                    )
            finally:
                stop.set()
                thread.join()


async def _async_whole_read(n: int) -> tuple[float, float, int]:
    """``await state.get("")`` beside a task sending without pause.

    Returns how long the read took, the longest send beside it, and the
    sends made meanwhile.
    """
    async with open_state({"jobs": {f"k{i}": {"n": i} for i in range(n)}}) as state:
        longest = 0.0
        sends = 0
        reading = True

        async def sender() -> None:
            nonlocal longest, sends
            while reading:
                start = time.perf_counter()
                await state.send(Set("x", sends))
                longest = max(longest, time.perf_counter() - start)
                sends += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            await state.send(Set("x", -1))
            start = time.perf_counter()
            await state.get("")
            took = time.perf_counter() - start
            reading = False
        return took, longest, sends


def async_whole_read(n: int, backend: str) -> str:
    """Row (g) of the async handle: ``await state.get("")`` beside a sender task."""
    took, longest, sends = anyio.run(_async_whole_read, n, backend=backend)
    with _copied_on_the_loop():
        took_c, longest_c, sends_c = anyio.run(_async_whole_read, n, backend=backend)
    return (
        f'| {backend} | (g) await state.get(""), {n:,} leaves, a sender task '
        f"beside it | took {took * 1e3:,.0f} ms, longest send {longest * 1e3:.1f} "
        f"ms, {sends / took:,.0f} sends/s; copied on the loop: took "
        f"{took_c * 1e3:,.0f} ms, longest send {longest_c * 1e3:,.1f} ms, "
        f"{sends_c / took_c:,.0f} sends/s |"
    )


@contextlib.contextmanager
def _loaded_on_the_loop() -> Iterator[None]:
    """Checkpoint loads as before: one decode call, and on the state's loop
    the tree compared with the state's, copied and encoded for the journal."""
    saved = (
        _checkpoint_files.loads_in_slices,
        _checkpoint_disk.Set,
        _checkpoint_disk.dumps_in_slices,
        Tree.offer,
    )
    _checkpoint_files.loads_in_slices = _checkpoint_files._STRICT.loads
    _checkpoint_disk.Set = lambda path, value, eq=True: Set(path, value)
    _checkpoint_disk.dumps_in_slices = lambda value, dumps: None
    Tree.offer = lambda self, value, copy: None
    try:
        yield
    finally:
        (
            _checkpoint_files.loads_in_slices,
            _checkpoint_disk.Set,
            _checkpoint_disk.dumps_in_slices,
            Tree.offer,
        ) = saved


async def _checkpoint_load(n: int) -> tuple[float, float]:
    """``Checkpoints.load()`` of a persisted state of *n* leaves.

    Returns how long it took and the longest stop of the event loop
    meanwhile, as a task sleeping 1 ms at a time saw it.
    """
    initial = {"jobs": {f"k{i}": {"n": i} for i in range(n)}}
    with tempfile.TemporaryDirectory(dir=os.environ.get("STATEWARD_BENCH_DIR")) as d:
        state_dir = os.path.join(d, "state")
        async with open_state(initial, state_dir=state_dir, durability="none") as state:
            del initial
            saved = Checkpoints(state, os.path.join(d, "checkpoints"))
            info = await saved.save()
            await state.send(Set("jobs.k1.n", -1))
            took, longest = await _beside_a_ticker(saved.load(info.path))
            assert await state.get("jobs.k1.n") == 1
    return took, longest


async def _beside_a_ticker(work: Awaitable[object]) -> tuple[float, float]:
    """Await *work* beside a task sleeping 1 ms at a time.

    Returns how long *work* took and the longest stop of the event loop
    meanwhile, as the sleeping task saw it.
    """
    longest = 0.0
    running = True

    async def tick() -> None:
        nonlocal longest
        last = time.perf_counter()
        while running:
            await anyio.sleep(0.001)
            now = time.perf_counter()
            longest = max(longest, now - last - 0.001)
            last = now

    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        await anyio.sleep(0.01)
        start = time.perf_counter()
        await work
        took = time.perf_counter() - start
        running = False
    return took, longest


def checkpoint_load(n: int, backend: str) -> str:
    """Row (j): the event loop during a checkpoint load, now and as before."""
    took, longest = anyio.run(_checkpoint_load, n, backend=backend)
    with _loaded_on_the_loop():
        took_b, longest_b = anyio.run(_checkpoint_load, n, backend=backend)
    return (
        f"| {backend} | (j) Checkpoints.load(), {n:,} leaves, persisted | took "
        f"{took:.2f} s, the loop's longest stop {longest * 1e3:,.0f} ms; as before "
        f"(one decode call; compared, copied and encoded on the loop): took "
        f"{took_b:.2f} s, longest stop {longest_b * 1e3:,.0f} ms |"
    )


async def _checkpoint_save(n: int, child: str) -> tuple[float, float]:
    """``Checkpoints.save()`` of a persisted state of *n* leaves.

    *child* is its ``snapshot_child``. Returns how long the save took and
    the longest stop of the event loop meanwhile (a task sleeping 1 ms at a
    time).
    """
    initial = {"jobs": {f"k{i}": {"n": i} for i in range(n)}}
    with tempfile.TemporaryDirectory(dir=os.environ.get("STATEWARD_BENCH_DIR")) as d:
        config = PersistenceConfig(
            os.path.join(d, "state"),
            "none",
            snapshot_child=child,  # type: ignore[arg-type]
        )
        async with anyio.create_task_group() as tg:
            state = await tg.start(StateActor(initial=initial, persistence=config).run)
            del initial
            await state.send(Set("jobs.k1.n", -1))
            checkpoints = Checkpoints(state, os.path.join(d, "checkpoints"))
            took, longest = await _beside_a_ticker(checkpoints.save())
            await state.stop()
    gc.unfreeze()
    return took, longest


def checkpoint_save(n: int, backend: str) -> str:
    """Row (l): the event loop during a checkpoint save, rebuilt and forked."""
    took, longest = anyio.run(_checkpoint_save, n, "replay", backend=backend)
    took_f, longest_f = anyio.run(_checkpoint_save, n, "fork", backend=backend)
    return (
        f"| {backend} | (l) Checkpoints.save(), {n:,} leaves, persisted | rebuilt: "
        f"took {took:.2f} s, the loop's longest stop "
        f"{longest * 1e3:,.1f} ms; forked: took {took_f:.2f} s, longest stop "
        f"{longest_f * 1e3:,.1f} ms |"
    )
