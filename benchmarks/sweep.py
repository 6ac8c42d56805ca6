"""The sweep: how a send's cost moves with tree size, subscribers and durability.

Every series is measured in one run together with its baseline, and printed
as a table; with ``--plot DIR`` it is also drawn as PNG charts (matplotlib,
the ``plot`` extra: never a dependency of stateward itself).

(1) one worker, ``send`` + ``acks()``, one subscriber, on trees of 1,000 to
    1,000,000 leaves; baseline: the raw anyio ask round trip;
(2) 100 workers sending ``Set`` with 0 to 16 subscribers acking every event;
    baseline: the raw anyio one-way stream;
(3) latency percentiles of one ``send`` + ``acks()``, in memory and durable
    (journal, fsync per write); baseline: one append + fsync on this disk;
(4) durable against in-memory throughput, one worker and 100 workers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from stateward import PersistenceConfig, Set, StateActor

from .core import _ack, _tree, raw_one_way, raw_round_trip, sequential_acks

if TYPE_CHECKING:
    from collections.abc import Iterator

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


@attrs.define
class Sweep:
    """The measured series of one backend, ready to print or to draw."""

    backend: str
    round_trip: float = 0.0  # raw ask round trips per second
    one_way: float = 0.0  # raw one-way items per second
    fsync: float = 0.0  # raw append + fsync per second
    by_leaves: dict[int, float] = attrs.Factory(dict)  # leaves -> sends/s
    by_subscribers: dict[int, float] = attrs.Factory(dict)  # subs -> sends/s
    latency: dict[str, list[float]] = attrs.Factory(dict)  # kind -> seconds
    durable: dict[str, float] = attrs.Factory(dict)  # label -> sends/s


def percentile(samples: list[float], p: float) -> float:
    """The *p*-th percentile of *samples* (nearest rank)."""
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered)) - 1))
    return ordered[rank]


async def many_subscribers(n: int, subscribers: int, workers: int = 100) -> float:
    """Sends per second from *workers* tasks, each event acked by every subscriber."""
    per = max(1, n // workers)
    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor().run)
        for s in range(subscribers):
            await state.subscribe("w.*", _ack, name=f"s{s}", mailbox_size=256)

        async def worker(w: int) -> None:
            for i in range(per):
                await state.send(Set(f"w.{w}", i))

        start = time.perf_counter()
        async with anyio.create_task_group() as inner:
            for w in range(workers):
                inner.start_soon(worker, w)
        receipt = await state.send(Set("w.done", True))  # every event consumed
        await receipt.acks()
        elapsed = time.perf_counter() - start
        await state.stop()
    return per * workers / elapsed


async def latencies(n: int, state_dir: str | None) -> list[float]:
    """Seconds of each of *n* ``send`` + ``acks()``, one subscriber."""
    config = None if state_dir is None else PersistenceConfig(state_dir)
    durable = None if state_dir is None else True
    samples: list[float] = []
    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor(persistence=config).run)
        await state.subscribe("job.x", _ack, name="sub")
        for i in range(n):
            start = time.perf_counter()
            receipt = await state.send(Set("job.x", i), durable=durable)
            await receipt.acks()
            samples.append(time.perf_counter() - start)
        await state.stop()
    if state_dir is not None:
        shutil.rmtree(state_dir)
    return samples


async def throughput(n: int, workers: int, state_dir: str | None) -> float:
    """Sends per second from *workers* tasks, durable when *state_dir* is given."""
    config = None if state_dir is None else PersistenceConfig(state_dir)
    durable = None if state_dir is None else True
    per = max(1, n // workers)
    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor(persistence=config).run)

        async def worker(w: int) -> None:
            for i in range(per):
                await state.send(Set(f"w.{w}", i), durable=durable)

        start = time.perf_counter()
        async with anyio.create_task_group() as inner:
            for w in range(workers):
                inner.start_soon(worker, w)
        elapsed = time.perf_counter() - start
        await state.stop()
    if state_dir is not None:
        shutil.rmtree(state_dir)
    return per * workers / elapsed


def fsync_latencies(directory: str, n: int) -> list[float]:
    """Seconds of each of *n* appends of one small record, each fsynced."""
    path = os.path.join(directory, "raw.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    samples: list[float] = []
    try:
        for _ in range(n):
            start = time.perf_counter()
            os.write(fd, b"x" * 64)
            os.fsync(fd)
            samples.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        os.unlink(path)
    return samples


async def measure(backend: str, n: int, quick: bool, directory: str) -> Sweep:
    """Every series of one backend, each beside its baseline."""
    sweep = Sweep(backend)
    sweep.round_trip = await raw_round_trip(n)
    sweep.one_way = await raw_one_way(n * 4)
    sizes = [1_000, 10_000, 100_000] if quick else [1_000, 10_000, 100_000, 1_000_000]
    for leaves in sizes:
        tree: Any = _tree(leaves)
        sweep.by_leaves[leaves] = await sequential_acks(n, initial=tree)
        del tree
    for subs in (0, 1, 2, 4, 8, 16):
        sweep.by_subscribers[subs] = await many_subscribers(n, subs)
    durable_n = max(50, n // 20)  # one fsync each: keep the run short
    raw = fsync_latencies(directory, durable_n)
    sweep.fsync = len(raw) / sum(raw)
    sweep.latency["append + fsync (baseline)"] = raw
    sweep.latency["in memory"] = await latencies(n, None)
    sweep.latency["durable"] = await latencies(
        durable_n, os.path.join(directory, "lat")
    )
    journal = os.path.join(directory, "tp")
    sweep.durable["1 worker, in memory"] = await throughput(n, 1, None)
    sweep.durable["1 worker, durable"] = await throughput(durable_n, 1, journal)
    sweep.durable["100 workers, in memory"] = await throughput(n, 100, None)
    sweep.durable["100 workers, durable"] = await throughput(n // 4, 100, journal)
    return sweep


def rows(sweep: Sweep) -> Iterator[str]:
    """The sweep of one backend as Markdown rows, each with its ratio."""
    b = sweep.backend
    yield f"| {b} | raw ask round trip (baseline of 1) | {sweep.round_trip:,.0f}/s |"
    for leaves, rate in sweep.by_leaves.items():
        ratio = rate / sweep.round_trip
        yield f"| {b} | (1) {leaves:,} leaves | {rate:,.0f}/s = {ratio:.2f}x |"
    yield f"| {b} | raw one-way stream (baseline of 2) | {sweep.one_way:,.0f}/s |"
    for subs, rate in sweep.by_subscribers.items():
        ratio = rate / sweep.one_way
        yield f"| {b} | (2) {subs} subscribers | {rate:,.0f}/s = {ratio:.2f}x |"
    for kind, samples in sweep.latency.items():
        cells = ", ".join(
            f"p{p:g} {percentile(samples, p) * 1e3:.3f}" for p in PERCENTILES
        )
        worst = max(samples) * 1e3
        yield f"| {b} | (3) {kind}, ms | {cells}, max {worst:.3f} |"
    for label, rate in sweep.durable.items():
        ratio = rate / sweep.fsync
        yield f"| {b} | (4) {label} | {rate:,.0f}/s = {ratio:.1f}x append+fsync |"


def plot(sweeps: list[Sweep], directory: str) -> list[str]:
    """Draw the sweeps as four PNG charts in *directory*; return their paths."""
    try:
        import matplotlib  # the optional plot extra

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        msg = "--plot needs matplotlib: pip install 'stateward[plot]'"
        raise SystemExit(msg) from exc
    os.makedirs(directory, exist_ok=True)
    written: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        path = os.path.join(directory, name)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for s in sweeps:
        (line,) = ax.plot(
            list(s.by_leaves), list(s.by_leaves.values()), "o-", label=s.backend
        )
        ax.axhline(
            s.round_trip,
            ls="--",
            color=line.get_color(),
            label=f"{s.backend}: raw ask round trip",
        )
    ax.set(
        xscale="log",
        xlabel="leaves in the tree",
        ylabel="send + acks per second",
        title="One worker, one subscriber: the tree's size costs nothing",
        ylim=(0, None),
    )
    ax.legend(fontsize="small")
    save(fig, "throughput-by-tree-size.png")

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for s in sweeps:
        (line,) = ax.plot(
            list(s.by_subscribers),
            list(s.by_subscribers.values()),
            "o-",
            label=s.backend,
        )
        ax.axhline(
            s.one_way,
            ls="--",
            color=line.get_color(),
            label=f"{s.backend}: raw one-way stream",
        )
    ax.set(
        xlabel="subscribers acking every event",
        ylabel="sends per second (100 workers)",
        title="100 workers: each subscriber is one more actor per event",
        ylim=(0, None),
    )
    ax.legend(fontsize="small")
    save(fig, "throughput-by-subscribers.png")

    fig, axes = plt.subplots(1, len(sweeps), figsize=(6.4 * len(sweeps), 4))
    for ax, s in zip(axes if len(sweeps) > 1 else [axes], sweeps, strict=True):
        labels = [f"p{p:g}" for p in PERCENTILES] + ["max"]
        width = 0.8 / len(s.latency)
        for k, (kind, samples) in enumerate(s.latency.items()):
            values = [percentile(samples, p) * 1e3 for p in PERCENTILES]
            values.append(max(samples) * 1e3)
            xs = [i + k * width for i in range(len(labels))]
            ax.bar(xs, values, width, label=kind)
        ax.set_xticks([i + width for i in range(len(labels))], labels)
        ax.set(
            yscale="log",
            ylabel="milliseconds",
            title=f"{s.backend}: latency of one send + acks",
        )
        ax.legend(fontsize="small")
    save(fig, "latency-percentiles.png")

    fig, ax = plt.subplots(figsize=(6.4, 4))
    labels = list(sweeps[0].durable)
    width = 0.8 / len(sweeps)
    for k, s in enumerate(sweeps):
        xs = [i + k * width for i in range(len(labels))]
        ax.bar(xs, [s.durable[label] for label in labels], width, label=s.backend)
    ax.axhline(sweeps[0].fsync, ls="--", color="grey", label="raw append + fsync")
    ax.set_xticks(
        [i + width * (len(sweeps) - 1) / 2 for i in range(len(labels))],
        [label.replace(", ", "\n") for label in labels],
    )
    ax.set(
        yscale="log",
        ylabel="sends per second",
        title="Durable against in memory (durable: on disk when answered)",
    )
    ax.legend(fontsize="small")
    save(fig, "durable-vs-memory.png")
    return written


def run(
    n: int, backends: list[str], quick: bool, plot_dir: str | None
) -> Iterator[str]:
    """Measure every series on each backend, yield rows, then draw them."""
    sweeps: list[Sweep] = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("STATEWARD_BENCH_DIR")) as d:
        for backend in backends:
            sweep = anyio.run(measure, backend, n, quick, d, backend=backend)
            sweeps.append(sweep)
            yield from rows(sweep)
    if plot_dir is not None:
        for path in plot(sweeps, plot_dir):
            yield f"| - | chart | {path} |"
