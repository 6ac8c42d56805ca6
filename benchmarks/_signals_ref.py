"""The reference state-signals library, driven for the signals benchmark.

Runs under a Python that has state-signals 1.0.1 (and redis<4):

    python _signals_ref.py responder PORT       answers every signal with RAS 1
    python _signals_ref.py exporter PORT N      times N publish_signal calls

The exporter prints one JSON line: the seconds of each call.
"""

from __future__ import annotations

import json
import sys
import time

import state_signals


def responder(port: str) -> None:
    resp = state_signals.SignalResponder(redis_port=int(port), log_level="ERROR")
    print("ready", flush=True)
    for signal in resp.listen():
        if signal.event == "initialization":
            resp.srespond(signal)
        elif signal.event != "shutdown":
            resp.srespond(signal, 1)


def exporter(port: str, n: str) -> None:
    exp = state_signals.SignalExporter("bench", redis_port=int(port), log_level="ERROR")
    if exp.initialize_and_wait(1, ["tick"], timeout=30, periodic=True):
        raise SystemExit("no responder answered")
    times = []
    for i in range(int(n)):
        start = time.perf_counter()
        code, _ = exp.publish_signal("tick", sample=i + 1, timeout=10)
        times.append(time.perf_counter() - start)
        if code != 0:
            msg = f"publish_signal returned {code}"
            raise SystemExit(msg)
    exp.shutdown()
    print(json.dumps(times), flush=True)


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    responder(*args) if role == "responder" else exporter(*args)
