"""The remote benchmark: a state served over Redis against the raw client.

Everything against a private redis-server started for the run, as ratios to
a baseline measured in the same run (medians of single round trips):

(a) raw echo: XADD by the client -> XREADGROUP by an echo task (its own
    connection) -> XADD reply -> XREAD by the client, with the same client;
(b) remote ``send(Set(...))`` to an in-memory state, one worker, sequential.
    Target: <= 1.5x (a);
(c) remote ``send`` + ``receipt.acks()`` with one subscriber at the owner.
    Target: <= 2x (a).
"""

from __future__ import annotations

import shutil
import socket
import statistics
import subprocess
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


async def _remote(url: str, n: int, with_acks: bool) -> list[float]:
    times: list[float] = []
    async with open_state({}) as state, serve_redis(state, url, name="bench"):
        if with_acks:
            await state.subscribe("", lambda e: RAS.SUCCESS, name="sub")
        async with connect_redis(url, name="bench") as remote:
            for i in range(n):
                start = time.perf_counter()
                receipt = await remote.send(Set("n", i))
                if with_acks:
                    await receipt.acks(timeout=5)
                times.append(time.perf_counter() - start)
    return times


def run(n: int, backends: list[str], quick: bool) -> Iterator[str]:
    """Yield the report's rows, one figure at a time."""
    n = 100 if quick else min(n, 2_000)
    proc, url, directory = _start_redis()
    try:
        for backend in backends:
            raw = anyio.run(_raw_echo, url, n, backend=backend)
            send = anyio.run(_remote, url, n, False, backend=backend)
            acks = anyio.run(_remote, url, n, True, backend=backend)
            a, b, c = (statistics.median(t) * 1e3 for t in (raw, send, acks))
            yield f"| {backend} | (a) raw coredis echo, median | {a:.2f} ms |"
            yield _row(backend, "(b) remote send, median", b, a, 1.5)
            yield _row(backend, "(c) remote send + acks, one subscriber", c, a, 2.0)
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(directory, ignore_errors=True)


def _row(backend: str, figure: str, value: float, base: float, target: float) -> str:
    ratio = value / base
    verdict = "meets" if ratio <= target else "MISSES"
    return (
        f"| {backend} | {figure} | {value:.2f} ms = {ratio:.2f}x (a) "
        f"(target <= {target}x: {verdict}) |"
    )
