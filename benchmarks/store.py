"""The Store benchmark: a synchronous call against a plain thread hand-off.

A :class:`~stateward.Store` call is a hand-off to the state's loop thread
and back, so its baseline is the cheapest such hand-off Python has,
measured in the same run: a request through a ``queue.SimpleQueue`` to a
server thread and the answer back through another (two thread switches).

(a) the hand-off, one client thread; and, per backend, the bare round trip
    through an event loop thread (schedule a callback that releases a lock
    the caller blocks on): the floor of any call answered on a loop;
(b) ``Store.set`` from one thread, tree of 1,000 leaves; then with one
    subscriber whose callback does nothing;
(c) 32 threads: the hand-off (32 clients, one server) against ``Store.set``;
(d) roz-remembers' ``Store.set`` on the same tree (if installed:
    ``pip install roz-remembers``), with and without a subscriber;
(e) durable ``Store(state_dir=...).set`` from one thread against one append
    + fsync of a small record on the same disk, issued from the same CPU
    as the calling thread (the call's own thread writes and syncs its
    record). On a VM the CPU that issues an fsync can change its cost by
    nearly 2x (on this one: 3,700-3,900 fsyncs/s from the first CPU,
    6,500-7,000/s from the second), so a baseline issued elsewhere would
    measure the VM. The same two, both left to the scheduler, are printed
    too.

Targets: (b) and (c) >= 0.5x the hand-off; (b) >= 20x roz-remembers;
(e) >= 0.5x append + fsync.

Where the machine has two CPUs or more, the calling threads of (a), (b) and
(c) run on one CPU and the thread that answers them (the server, the
state's loop) on another. Left to the scheduler, a hand-off between two
threads costs about 6 us when both land on one CPU and 20-50 us when they
do not (waking an idle CPU), and which happens varies from run to run: a
ratio between two such runs says more about the scheduler than about the
code. Apart, every figure pays the same wake-ups, as two threads running in
parallel do.
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Any

from stateward import Store

from .persistence import raw_fsync

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

THREADS = 32


def _two_cpus() -> tuple[int, int] | tuple[None, None]:
    """One CPU for the calling threads and one for the answering thread, if any."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None, None
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)


CALLERS, ANSWERER = _two_cpus()


def _pin(cpu: int | None) -> None:
    """Keep the calling thread on *cpu* (None: leave it where it is)."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # 0: this thread, on Linux


def ratio_row(
    backend: str, figure: str, rate: float, base: float, target: float
) -> str:
    """A table row: *rate* per second as a ratio of *base* (higher is better)."""
    ratio = rate / base
    verdict = "meets" if ratio >= target else "MISSES"
    return (
        f"| {backend} | {figure} | {rate:,.0f}/s = {ratio:.2f}x "
        f"(target >= {target}x: {verdict}) |"
    )


def _tree() -> dict[str, Any]:
    return {"items": {str(i): i for i in range(1_000)}}


def _timed(
    threads: int, calls: int, call: Callable[[int], None], pin: bool = True
) -> float:
    """Calls per second of *threads* threads making *calls* calls each.

    With *pin*, the threads run on the callers' CPU.
    """
    start_line = threading.Barrier(threads + 1)

    def client(t: int) -> None:
        if pin:
            _pin(CALLERS)
        start_line.wait()
        for i in range(calls):
            call(t * calls + i)

    workers = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    start_line.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    return threads * calls / (time.perf_counter() - start)


def handoff(threads: int, calls: int) -> float:
    """The baseline: requests to one server thread, each answered in turn."""
    requests: queue.SimpleQueue[tuple[int, queue.SimpleQueue[int]] | None] = (
        queue.SimpleQueue()
    )

    def serve() -> None:
        _pin(ANSWERER)
        while (item := requests.get()) is not None:
            item[1].put(item[0])

    server = threading.Thread(target=serve)
    server.start()
    answers = [queue.SimpleQueue[int]() for _ in range(threads)]

    def call(i: int) -> None:
        box = answers[i // calls]
        requests.put((i, box))
        box.get()

    try:
        return _timed(threads, calls, call)
    finally:
        requests.put(None)
        server.join()


def loop_round_trip(calls: int, backend: str) -> float:
    """The floor of a call answered on an event loop: nothing but the two wake-ups.

    The caller schedules a callback on the loop's thread (asyncio's
    ``call_soon_threadsafe``, trio's ``run_sync_soon``) that releases a lock
    the caller then blocks on.
    """
    import anyio.from_thread

    from stateward.actors._handoff import current_scheduler

    async def find_schedule() -> Callable[[Callable[[], object]], object]:
        _pin(ANSWERER)
        return current_scheduler()

    with anyio.from_thread.start_blocking_portal(backend) as portal:
        schedule = portal.call(find_schedule)
        lock = threading.Lock()
        lock.acquire()

        def call(_: int) -> None:
            schedule(lock.release)
            lock.acquire()

        return _timed(1, calls, call)


def store_set(threads: int, calls: int, backend: str, subscribers: int = 0) -> float:
    with Store(_tree(), backend=backend) as store:
        store._on_loop(_pin, ANSWERER)
        for _ in range(subscribers):
            store.subscribe(lambda event: None, "items")
        return _timed(threads, calls, lambda i: store.set(f"items.{i % 1000}", -i))


def roz_set(calls: int, subscribers: int = 0) -> float | None:
    try:
        import roz_remembers  # the library users come from, if installed
    except ImportError:
        return None
    store = roz_remembers.Store(_tree())
    for _ in range(subscribers):
        store.subscribe(lambda event: None)
    return _timed(1, calls, lambda i: store.set(f"items.{i % 1000}", -i))


def durable_set(directory: str, calls: int, backend: str, pin: bool = True) -> float:
    state_dir = os.path.join(directory, "store")
    try:
        with Store(_tree(), state_dir=state_dir, backend=backend) as store:
            return _timed(1, calls, lambda i: store.set(f"items.{i % 1000}", -i), pin)
    finally:
        shutil.rmtree(state_dir)


def callers_fsync(directory: str, n: int) -> float:
    """:func:`raw_fsync` from a thread on the callers' CPU."""
    rates: list[float] = []

    def measure() -> None:
        _pin(CALLERS)
        rates.append(raw_fsync(directory, n))

    thread = threading.Thread(target=measure)
    thread.start()
    thread.join()
    return rates[0]


def run(n: int, repeat: int, backends: list[str], quick: bool) -> Iterator[str]:
    """Yield the report's rows, one figure at a time (best of *repeat*)."""
    calls = max(200, n // 4)
    per_thread = max(20, calls // THREADS)
    durable = 200 if quick else 2_000
    one = max(handoff(1, calls) for _ in range(repeat))
    many = max(handoff(THREADS, per_thread) for _ in range(repeat))
    yield f"| - | (a) thread hand-off, 1 thread | {one:,.0f}/s |"
    yield f"| - | (a) thread hand-off, {THREADS} threads | {many:,.0f}/s |"
    roz = roz_set(max(50, calls // 20))
    roz_sub = roz_set(max(50, calls // 20), subscribers=1)
    with tempfile.TemporaryDirectory(dir=os.environ.get("STATEWARD_BENCH_DIR")) as d:
        records = 200 if quick else 1_000
        fsync = max(callers_fsync(d, records) for _ in range(repeat))
        anywhere = max(raw_fsync(d, records) for _ in range(repeat))
        yield (
            f"| - | (e) append + fsync, one record at a time, from the callers' "
            f"CPU | {fsync:,.0f}/s (left to the scheduler: {anywhere:,.0f}/s) |"
        )
        for backend in backends:
            floor = max(loop_round_trip(calls, backend) for _ in range(repeat))
            yield f"| {backend} | (a) bare round trip via the loop | {floor:,.0f}/s |"
            alone = max(store_set(1, calls, backend) for _ in range(repeat))
            sub = max(store_set(1, calls, backend, 1) for _ in range(repeat))
            threads = max(
                store_set(THREADS, per_thread, backend) for _ in range(repeat)
            )
            yield ratio_row(backend, "(b) Store.set, 1 thread", alone, one, 0.5)
            yield (
                f"| {backend} | (b) Store.set / the loop's bare round trip | "
                f"{alone / floor:.2f}x |"
            )
            yield ratio_row(backend, "(b) ... with 1 subscriber", sub, one, 0.5)
            yield ratio_row(
                backend, f"(c) Store.set, {THREADS} threads", threads, many, 0.5
            )
            if roz is None or roz_sub is None:
                yield f"| {backend} | (d) vs roz-remembers | not installed |"
            else:
                yield ratio_row(backend, "(d) (b) / roz-remembers", alone, roz, 20)
                yield ratio_row(backend, "(d) with 1 subscriber each", sub, roz_sub, 20)
            rate = max(durable_set(d, durable, backend) for _ in range(repeat))
            yield ratio_row(
                backend, "(e) durable Store.set, 1 thread", rate, fsync, 0.5
            )
            free = max(
                durable_set(d, durable, backend, pin=False) for _ in range(repeat)
            )
            yield (
                f"| {backend} | (e) the same, both left to the scheduler | "
                f"{free:,.0f}/s = {free / anywhere:.2f}x |"
            )
