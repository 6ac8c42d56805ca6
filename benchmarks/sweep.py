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
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from stateward import PersistenceConfig

from .core import (
    _tree,
    concurrent_sends,
    raw_one_way,
    raw_round_trip,
    sequential_acks,
)
from .persistence import fsync_samples, sends_per_second

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
        sweep.by_subscribers[subs] = await concurrent_sends(n, subscribers=subs)
    durable_n = max(50, n // 20)  # one fsync each: keep the run short
    raw = fsync_samples(directory, durable_n)
    sweep.fsync = len(raw) / sum(raw)
    sweep.latency["append + fsync (baseline)"] = raw
    for kind, count, config in (
        ("in memory", n, None),
        ("durable", durable_n, PersistenceConfig(os.path.join(directory, "lat"))),
    ):
        samples = sweep.latency[kind] = []
        await sequential_acks(count, persistence=config, samples=samples)
        if config is not None:
            shutil.rmtree(config.state_dir)
    for workers, count in ((1, durable_n), (100, n // 4)):
        w = f"{workers} worker{'s' if workers > 1 else ''}"
        journal = PersistenceConfig(os.path.join(directory, "tp"))
        sweep.durable[f"{w}, in memory"] = await sends_per_second(n, workers)
        sweep.durable[f"{w}, durable"] = await sends_per_second(count, workers, journal)
    return sweep


def _series(sweep: Sweep) -> list[tuple[dict[int, float], float, str, str]]:
    """Series (1) and (2): each with its baseline, what it is, and the x unit."""
    return [
        (sweep.by_leaves, sweep.round_trip, "ask round trip", "leaves"),
        (sweep.by_subscribers, sweep.one_way, "one-way stream", "subscribers"),
    ]


_LINE_CHARTS = [
    # (x label, y label, title, x scale, file) of series (1) and (2)
    (
        "leaves in the tree",
        "send + acks per second",
        "One worker, one subscriber: the tree's size costs nothing",
        "log",
        "throughput-by-tree-size.png",
    ),
    (
        "subscribers acking every event",
        "sends per second (100 workers)",
        "100 workers: each subscriber is one more actor per event",
        "linear",
        "throughput-by-subscribers.png",
    ),
]


def rows(sweep: Sweep) -> Iterator[str]:
    """The sweep of one backend as Markdown rows, each with its ratio."""
    b = sweep.backend
    for number, (series, base, base_label, unit) in enumerate(_series(sweep), 1):
        yield f"| {b} | raw {base_label} (baseline of {number}) | {base:,.0f}/s |"
        for x, rate in series.items():
            ratio = rate / base
            yield f"| {b} | ({number}) {x:,} {unit} | {rate:,.0f}/s = {ratio:.2f}x |"
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

    for number, (xlabel, ylabel, title, xscale, name) in enumerate(_LINE_CHARTS):
        fig, ax = plt.subplots(figsize=(6.4, 4))
        for sweep in sweeps:
            series, base, base_label, _ = _series(sweep)[number]
            (line,) = ax.plot(
                list(series), list(series.values()), "o-", label=sweep.backend
            )
            ax.axhline(
                base,
                ls="--",
                color=line.get_color(),
                label=f"{sweep.backend}: raw {base_label}",
            )
        ax.set(xscale=xscale, xlabel=xlabel, ylabel=ylabel, title=title, ylim=(0, None))
        ax.legend(fontsize="small")
        save(fig, name)

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
