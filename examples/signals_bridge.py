"""An unchanged state-signals exporter, answered by stateward subscribers.

The exporter below is state-signals 1.0.1 code as its users write it today
(``pip install state-signals 'redis<4'``). stateward serves a state with the
state-signals bridge on: each signal becomes a change under
``signals.<process_name>``, and two stateward subscribers answer the
exporter as two responders, with their own RAS codes and messages.

    REDIS_URL=redis://127.0.0.1:6379 python examples/signals_bridge.py
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import anyio

from stateward import RAS, open_state
from stateward.remote import serve_redis
from stateward.signals import Signals

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")


def unchanged_exporter(host: str, port: int) -> list[str]:
    """A benchmark tool's state-signals code, exactly as it was."""
    from state_signals import SignalExporter

    exporter = SignalExporter("fio", redis_host=host, redis_port=port)
    exporter.initialize_and_wait(2, ["benchmark-start", "benchmark-stop"])
    lines = []
    for event in ("benchmark-start", "benchmark-stop"):
        code, messages = exporter.publish_signal(event, sample=1, metadata={"bs": "4k"})
        lines.append(f"publish_signal({event!r}) -> {code.name} {messages}")
    exporter.shutdown()
    return lines


async def main() -> None:
    async def disk_checker(event):
        signal = event.new_value
        if signal["event"] == "benchmark-stop":
            return RAS.FAILURE, "the disk filled up during the run"
        return RAS.SUCCESS

    shut_down = anyio.Event()

    def log(event):
        print(f"revision {event.revision}: {event.path} = {event.new_value['event']}")
        if event.new_value["event"] == "shutdown":
            shut_down.set()

    address = urlsplit(URL)
    bridge = Signals(respond_as=("disk-checker", "log"))
    async with (
        open_state({}) as state,
        serve_redis(state, URL, name="lab", signals=bridge),
    ):
        await state.subscribe("signals.**", disk_checker, name="disk-checker")
        await state.subscribe("signals.**", log, name="log")
        lines = await anyio.to_thread.run_sync(
            unchanged_exporter, address.hostname, address.port or 6379
        )
        for line in lines:
            print(line)
        with anyio.fail_after(10):
            await shut_down.wait()  # the exporter's last signal, applied too
        print("state:", await state.get("signals.fio.event"))


if __name__ == "__main__":
    anyio.run(main)
