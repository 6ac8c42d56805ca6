"""The remote benchmark: a state served over Redis against the raw client.

Everything against a private redis-server started for the run, as ratios to
a baseline measured in the same run (medians of single round trips):

(a) raw echo: XADD by the client -> XREADGROUP by an echo task (its own
    connection) -> XADD reply -> XREAD by the client, with the same client;
(b) remote ``send(Set(...))`` to an in-memory state, one worker, sequential.
    Target: <= 1.5x (a);
(c) remote ``send`` + ``receipt.acks()`` with one subscriber at the owner.
    Target: <= 2x (a);
(d) 100 concurrent remote senders (one client), actions/s, the owner being
    ``stateward serve`` in a process of its own (``--durability none``),
    against (d0) 100 tasks doing XADD with the same client library.
    Target: >= 0.5x (d0);
(e) as (d), with durable sends (``--durability fsync``), against (e0) one
    append + fsync at a time on the same disk (``$STATEWARD_BENCH_DIR``).
    Target: >= 5x (e0), where the disk is slow enough for that to be
    possible.

Where the time of (b) goes: the owner's share (``server.busy_seconds`` per
send), the Redis round trips (a), and the rest (the client: encoding,
decoding, waking the sender).
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING

import anyio

from stateward import RAS, Set, open_state
from stateward.remote import connect_redis, serve_redis
from stateward.remote._redis import open_connection

if TYPE_CHECKING:
    from collections.abc import Iterator


def _start_redis() -> tuple[subprocess.Popen[bytes], str, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("python -m benchmarks remote needs redis-server on PATH")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    directory = tempfile.mkdtemp(prefix="sw-bench-redis-")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            directory,
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    return proc, f"redis://127.0.0.1:{port}", directory


async def _raw_echo(url: str, n: int) -> list[float]:
    times: list[float] = []
    async with (
        open_connection(url) as client,
        open_connection(url) as echo_conn,
        open_connection(url) as reader,
    ):
        await echo_conn.ensure_group("bench:in", "g")

        async def echo() -> None:
            while True:
                for entry_id, fields in await echo_conn.xreadgroup(
                    "bench:in", "g", "c", ">", count=64, block_ms=1000
                ):
                    await echo_conn.xadd("bench:out", fields)
                    await echo_conn.xack("bench:in", "g", [entry_id])

        async with anyio.create_task_group() as tg:
            tg.start_soon(echo)
            last = b"0-0"
            for i in range(n):
                start = time.perf_counter()
                await client.xadd("bench:in", {b"m": str(i).encode()})
                got: list[tuple[bytes, dict[bytes, bytes]]] = []
                while not got:
                    got = await reader.xread("bench:out", last, count=1, block_ms=1000)
                last = got[-1][0]
                times.append(time.perf_counter() - start)
            tg.cancel_scope.cancel()
    return times


async def _remote(
    url: str, n: int, with_acks: bool, owner: list[float] | None = None
) -> list[float]:
    times: list[float] = []
    async with (
        open_state({}) as state,
        serve_redis(state, url, name="bench") as server,
    ):
        if with_acks:
            await state.subscribe("", lambda e: RAS.SUCCESS, name="sub")
        async with connect_redis(url, name="bench") as remote:
            for i in range(n):
                start = time.perf_counter()
                receipt = await remote.send(Set("n", i))
                if with_acks:
                    await receipt.acks(timeout=5)
                times.append(time.perf_counter() - start)
        if owner is not None:
            count = max(server.applied, 1)
            owner.append((server.busy_seconds - server.reply_seconds) / count)
            owner.append(server.reply_seconds / count)
    return times


async def _raw_xadd_rate(url: str, tasks: int, each: int) -> float:
    async with open_connection(url) as client:

        async def one(t: int) -> None:
            for i in range(each):
                await client.xadd("bench:raw", {b"m": f"{t}-{i}".encode()})

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for t in range(tasks):
                tg.start_soon(one, t)
        elapsed = time.perf_counter() - start
        await client.delete(["bench:raw"])
    return tasks * each / elapsed


async def _remote_rate(url: str, tasks: int, each: int, durability: str) -> float:
    """100 senders in this process; the owner in another (``stateward serve``)."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("STATEWARD_BENCH_DIR")) as d:
        command = [
            sys.executable,
            "-m",
            "stateward.cli",
            "serve",
            "--state-dir",
            d,
            "--redis",
            url,
            "--name",
            "bench-rate",
            "--durability",
            durability,
        ]
        async with await anyio.open_process(command) as owner:
            try:
                assert owner.stdout is not None
                await owner.stdout.receive()  # "serving ..."
                async with connect_redis(url, name="bench-rate") as remote:

                    async def one(t: int) -> None:
                        for i in range(each):
                            await remote.send(Set(f"w{t}", i))

                    await one(-1)  # warm up
                    start = time.perf_counter()
                    async with anyio.create_task_group() as tg:
                        for t in range(tasks):
                            tg.start_soon(one, t)
                    return tasks * each / (time.perf_counter() - start)
            finally:
                owner.terminate()


def _fsync_rate(directory: str, n: int) -> float:
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        start = time.perf_counter()
        for i in range(n):
            os.write(fd, b"%d\n" % i)
            os.fsync(fd)
        return n / (time.perf_counter() - start)
    finally:
        os.close(fd)
        os.unlink(path)


def run(n: int, backends: list[str], quick: bool) -> Iterator[str]:
    """Yield the report's rows, one figure at a time."""
    n = 100 if quick else min(n, 2_000)
    proc, url, directory = _start_redis()
    try:
        each = 5 if quick else 20
        for backend in backends:
            raw = anyio.run(_raw_echo, url, n, backend=backend)
            owner: list[float] = []
            send = anyio.run(_remote, url, n, False, owner, backend=backend)
            acks = anyio.run(_remote, url, n, True, backend=backend)
            a, b, c = (statistics.median(t) * 1e3 for t in (raw, send, acks))
            yield f"| {backend} | (a) raw coredis echo, median | {a:.2f} ms |"
            yield ratio_row(backend, "(b) remote send, median", b, a, 1.5, "(a)")
            yield ratio_row(
                backend, "(c) remote send + acks, one subscriber", c, a, 2.0, "(a)"
            )
            own, replying = owner[0] * 1e3, owner[1] * 1e3
            rest = statistics.mean(send) * 1e3 - own - replying
            yield (
                f"| {backend} | (b) where the time goes (means) | owner applying "
                f"{own:.2f} ms, owner replying + XACK {replying:.2f} ms, the "
                f"client's XADD, the owner's blocked read and the client's "
                f"XREAD {rest:.2f} ms |"
            )
            d0 = anyio.run(_raw_xadd_rate, url, 100, each, backend=backend)
            d = anyio.run(_remote_rate, url, 100, each, "none", backend=backend)
            yield f"| {backend} | (d0) 100 tasks doing XADD | {d0:,.0f}/s |"
            verdict = "meets" if d / d0 >= 0.5 else "MISSES"
            yield (
                f"| {backend} | (d) 100 concurrent remote senders | {d:,.0f}/s = "
                f"{d / d0:.2f}x (d0) (target >= 0.5x: {verdict}) |"
            )
            disk = os.environ.get("STATEWARD_BENCH_DIR") or None
            with tempfile.TemporaryDirectory(dir=disk) as probe:
                e0 = _fsync_rate(probe, 200)
            e = anyio.run(_remote_rate, url, 100, each, "fsync", backend=backend)
            verdict = "meets" if e / e0 >= 5 else "MISSES"
            yield (
                f"| {backend} | (e) 100 durable remote senders vs (e0) "
                f"{e0:,.0f} fsyncs/s | {e:,.0f}/s = {e / e0:.1f}x (e0) "
                f"(target >= 5x: {verdict}) |"
            )
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(directory, ignore_errors=True)


def ratio_row(
    backend: str, figure: str, value: float, base: float, target: float, of: str
) -> str:
    """A table row: *value* in ms as a ratio of *base* (the figure *of*)."""
    ratio = value / base
    verdict = "meets" if ratio <= target else "MISSES"
    return (
        f"| {backend} | {figure} | {value:.2f} ms = {ratio:.2f}x {of} "
        f"(target <= {target}x: {verdict}) |"
    )
