"""The core benchmark: stateward against the anyio channels it is built on.

Every figure is measured in the same run and reported as a ratio against a
baseline from that run, because these machines are noisy. Each figure is the
best of ``repeat`` runs.

(a) raw anyio memory stream: one-way throughput, and the ask round trip
    (send a request with a reply event, wait for the reply);
(b) ``send(Set)`` from 100 concurrent workers, one subscriber acking every event;
(c) one worker: ``send`` then ``acks()``, sequentially, one subscriber;
(d) routing: (c)-style sends with 10 vs 10,000 non-matching subscribers;
(e) a one-leaf write into trees of 1,000 and 1,000,000 leaves.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio

from stateward import RAS, PersistenceConfig, Set, StateActor

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

Result = dict[str, float]


async def _best(repeat: int, fn: Callable[[], Awaitable[float]]) -> float:
    return max([await fn() for _ in range(repeat)])


async def raw_one_way(n: int) -> float:
    tx, rx = anyio.create_memory_object_stream[int](64)

    async def consume() -> None:
        async with rx:
            async for _ in rx:
                pass

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        async with tx:
            for i in range(n):
                await tx.send(i)
    return n / (time.perf_counter() - start)


async def raw_round_trip(n: int) -> float:
    tx, rx = anyio.create_memory_object_stream[anyio.Event](64)

    async def serve() -> None:
        async with rx:
            async for reply in rx:
                reply.set()

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve)
        async with tx:
            for _ in range(n):
                reply = anyio.Event()
                await tx.send(reply)
                await reply.wait()
    return n / (time.perf_counter() - start)


async def _ack(event: Any) -> int:
    return RAS.SUCCESS


async def concurrent_sends(n: int, workers: int = 100, subscribers: int = 1) -> float:
    """Sends per second from *workers* tasks, every event acked by each subscriber."""
    per_worker = n // workers
    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor().run)
        for s in range(subscribers):
            await state.subscribe("w.*", _ack, name=f"sub{s}", mailbox_size=256)

        async def worker(w: int) -> None:
            path = f"w.{w}"
            for i in range(per_worker):
                await state.send(Set(path, i))

        start = time.perf_counter()
        async with anyio.create_task_group() as inner:
            for w in range(workers):
                inner.start_soon(worker, w)
        # the subscriber must have consumed every event too
        receipt = await state.send(Set("w.done", True))
        await receipt.acks()
        elapsed = time.perf_counter() - start
        await state.stop()
    return per_worker * workers / elapsed


async def sequential_acks(
    n: int,
    *,
    others: int = 0,
    initial: Any = None,
    path: str = "job.x",
    persistence: PersistenceConfig | None = None,
    samples: list[float] | None = None,
) -> float:
    """One worker's ``send`` + ``acks()`` per second, one subscriber.

    With *persistence*, each send is durable; with *samples*, the seconds of
    each round trip are appended there.
    """
    durable = None if persistence is None else True
    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor(initial=initial, persistence=persistence).run)
        await state.subscribe(path, _ack, name="sub")
        for i in range(others):
            await state.subscribe(f"other.{i}.x", _ack, name=f"o{i}")
        start = before = time.perf_counter()
        for i in range(n):
            receipt = await state.send(Set(path, i), durable=durable)
            report = await receipt.acks()
            assert report.ok, report
            if samples is not None:
                after = time.perf_counter()
                samples.append(after - before)
                before = after
        elapsed = time.perf_counter() - start
        await state.stop()
    return n / elapsed


def _tree(leaves: int) -> dict[str, Any]:
    # 1,000 groups of leaves/1000: a wide, realistic tree (not one flat dict)
    groups = max(1, leaves // 1000)
    per = leaves // groups
    tree: dict[str, Any] = {
        f"g{g}": {f"k{k}": k for k in range(per)} for g in range(groups)
    }
    tree["job"] = {"x": 0}
    return tree


async def bench(n: int, repeat: int) -> Result:
    """Run every figure once per *repeat* and keep the best."""
    out: Result = {}
    out["a_one_way"] = await _best(repeat, lambda: raw_one_way(n * 4))
    out["a_round_trip"] = await _best(repeat, lambda: raw_round_trip(n))
    out["b_concurrent_sends"] = await _best(repeat, lambda: concurrent_sends(n))
    out["c_send_acks"] = await _best(repeat, lambda: sequential_acks(n))
    out["d_10_subs"] = await _best(repeat, lambda: sequential_acks(n, others=10))
    out["d_10000_subs"] = await _best(repeat, lambda: sequential_acks(n, others=10_000))
    small, big = _tree(1_000), _tree(1_000_000)
    out["e_1k_leaves"] = await _best(repeat, lambda: sequential_acks(n, initial=small))
    out["e_1m_leaves"] = await _best(repeat, lambda: sequential_acks(n, initial=big))
    return out


TARGETS = [
    # (label, numerator, denominator, minimum ratio)
    ("(b) / (a) one-way", "b_concurrent_sends", "a_one_way", 0.5),
    ("(c) / (a) round trip", "c_send_acks", "a_round_trip", 0.33),
    ("(d) 10,000 subs / 10 subs", "d_10000_subs", "d_10_subs", 1 / 1.5),
    ("(e) 1M leaves / 1k leaves", "e_1m_leaves", "e_1k_leaves", 1 / 1.2),
]


def report(backend: str, out: Result) -> list[str]:
    """Format one backend's figures and ratios as Markdown rows."""
    rows = [f"| {backend} | {name} | {value:,.0f}/s |" for name, value in out.items()]
    rows.append("")
    for label, num, den, minimum in TARGETS:
        ratio = out[num] / out[den]
        verdict = "meets" if ratio >= minimum else "MISSES"
        target = f"target >= {minimum:.2f}: {verdict}"
        rows.append(f"| {backend} | {label} | {ratio:.2f} ({target}) |")
    return rows
