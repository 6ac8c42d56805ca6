"""The state-signals benchmark: the bridge and the native API against the reference.

Against a private redis-server, medians of single round trips, as ratios to
baselines measured in the same run:

(a) the reference: an unchanged exporter's ``publish_signal`` answered by an
    unchanged responder (two processes of the reference library);
(b) the same exporter answered by stateward (the bridge, one subscriber).
    Target: <= 1.1x (a): both are dominated by the exporter's 0.1 s poll;
(c) raw: PUBLISH of a signal with coredis -> an unchanged responder ->
    its response read back, with the same client;
(d) a stateward ``send`` + ``acks()`` answered by that unchanged responder
    through the bridge. Target: <= 1.25x (c);
(e) the native API: ``publish_signal`` of stateward's exporter answered by
    stateward's responder. Target: (a) >= 50x (e).

(a)-(d) need the reference library in a Python of its own (it needs
redis<4): ``$STATEWARD_SIGNALS_PYTHON``, or the virtualenv the tests make
under ``~/.cache/stateward-tests``. Without it only (e) is measured.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from stateward import RAS, Set, open_state
from stateward.remote import serve_redis
from stateward.remote._redis import open_connection
from stateward.signals import Signals, open_exporter, open_responder, protocol as sp

from .remote import _start_redis, ratio_row

if TYPE_CHECKING:
    from collections.abc import Iterator

SCRIPT = str(Path(__file__).with_name("_signals_ref.py"))


def _reference_python() -> str | None:
    given = os.environ.get("STATEWARD_SIGNALS_PYTHON")
    if given:
        return given
    python = Path.home() / ".cache/stateward-tests/state-signals-1.0.1/bin/python"
    return str(python) if python.exists() else None


def _port(url: str) -> str:
    return url.rsplit(":", 1)[1]


async def _reference_exporter(python: str, url: str, n: int) -> list[float]:
    done = await anyio.run_process(
        [python, SCRIPT, "exporter", _port(url), str(n)], check=True
    )
    return list(json.loads(done.stdout.decode().splitlines()[-1]))


async def _with_reference_responder(python: str, url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, outside the timing
        [python, SCRIPT, "responder", _port(url)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    await anyio.to_thread.run_sync(proc.stdout.readline)  # "ready"
    return proc


async def _a(python: str, url: str, n: int) -> list[float]:
    proc = await _with_reference_responder(python, url)
    try:
        return await _reference_exporter(python, url, n)
    finally:
        proc.kill()
        proc.wait()


async def _b(python: str, url: str, n: int) -> list[float]:
    signals = Signals(respond_as=("checker",))
    async with (
        open_state({}) as state,
        serve_redis(state, url, name="bench", signals=signals),
    ):
        await state.subscribe("signals.**", lambda e: RAS.SUCCESS, name="checker")
        return await _reference_exporter(python, url, n)


async def _c(python: str, url: str, n: int) -> list[float]:
    proc = await _with_reference_responder(python, url)
    times: list[float] = []
    try:
        async with (
            open_connection(url) as conn,
            conn.listen([sp.RESPONSES]) as responses,
        ):
            for i in range(n):
                signal = sp.Signal("raw-1", "raw", "tick", "host", i + 1)
                start = time.perf_counter()
                await conn.publish(sp.SIGNALS, signal.to_json())
                async for _, data in responses:
                    if sp.parse_response(data).event == "tick":
                        break
                times.append(time.perf_counter() - start)
    finally:
        proc.kill()
        proc.wait()
    return times


async def _d(python: str, url: str, n: int) -> list[float]:
    proc = await _with_reference_responder(python, url)
    times: list[float] = []
    config = Signals(export="jobs.**", reinitialize=0.2)
    try:
        async with (
            open_state({}) as state,
            serve_redis(state, url, name="bench", signals=config) as server,
        ):
            bridge = server.signals
            assert bridge is not None
            with anyio.fail_after(30):
                while not bridge.responders:  # noqa: ASYNC110 - a counter
                    await anyio.sleep(0.05)
            for i in range(n):
                start = time.perf_counter()
                receipt = await state.send(Set("jobs.n", i))
                report = await receipt.acks(timeout=10)
                times.append(time.perf_counter() - start)
                assert report.ok, report
    finally:
        proc.kill()
        proc.wait()
    return times


async def _e(url: str, n: int) -> list[float]:
    times: list[float] = []
    async with (
        open_responder(url, "native") as responder,
        open_exporter(url, "native") as exporter,
        anyio.create_task_group() as tg,
    ):

        async def answer() -> None:
            async for signal in responder.listen():
                if signal.event == sp.INITIALIZATION:
                    await responder.srespond(signal)
                else:
                    await responder.srespond(signal, 1)

        tg.start_soon(answer)
        assert await exporter.initialize_and_wait(1, ["tick"], timeout=10) == 0
        for i in range(n):
            start = time.perf_counter()
            code, _ = await exporter.publish_signal("tick", sample=i + 1)
            times.append(time.perf_counter() - start)
            assert code == 0
        tg.cancel_scope.cancel()
    return times


def run(n: int, backends: list[str], quick: bool) -> Iterator[str]:
    """Yield the report's rows, one figure at a time."""
    slow_n = 10 if quick else min(n, 50)  # the reference polls: ~0.1 s each
    fast_n = 100 if quick else min(n, 1_000)
    python = _reference_python()
    proc, url, directory = _start_redis()
    try:
        for backend in backends:
            e = statistics.median(anyio.run(_e, url, fast_n, backend=backend)) * 1e3
            if python is None:
                yield f"| {backend} | (e) native round trip, median | {e:.2f} ms |"
                yield (
                    f"| {backend} | (a)-(d) | not measured: no Python with "
                    "state-signals 1.0.1 (set STATEWARD_SIGNALS_PYTHON) |"
                )
                continue
            a, b = (
                statistics.median(anyio.run(f, python, url, slow_n, backend=backend))
                * 1e3
                for f in (_a, _b)
            )
            c, d = (
                statistics.median(anyio.run(f, python, url, fast_n, backend=backend))
                * 1e3
                for f in (_c, _d)
            )
            yield f"| {backend} | (a) reference exporter + responder | {a:.1f} ms |"
            yield ratio_row(
                backend, "(b) reference exporter, stateward answers", b, a, 1.1, "(a)"
            )
            yield f"| {backend} | (c) raw PUBLISH -> reference responder | {c:.2f} ms |"
            yield ratio_row(
                backend, "(d) send + acks via a reference responder", d, c, 1.25, "(c)"
            )
            speedup = a / e
            verdict = "meets" if speedup >= 50 else "MISSES"
            yield (
                f"| {backend} | (e) native round trip | {e:.2f} ms: (a) is "
                f"{speedup:.0f}x slower (target >= 50x: {verdict}) |"
            )
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(directory, ignore_errors=True)
