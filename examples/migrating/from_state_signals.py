"""A state-signals exporter/responder pair, moved to a state served over Redis.

The owner's subscribers answer as responders did (a RAS code, and a message);
the worker sends and awaits the AckReport as publish_signal returned a code.
Needs a Redis server at $REDIS_URL (default redis://127.0.0.1:6379).
"""

import os

import anyio

from stateward import RAS, Set, open_state
from stateward.remote import connect_redis, serve_redis

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")


async def main():
    async with open_state() as state, serve_redis(state, URL, name="bench"):

        def responder(event):  # a SignalResponder's RAS answer
            return (
                RAS.SUCCESS if event.new_value != "crash" else (RAS.ERROR, "node down")
            )

        await state.subscribe("signals", responder, name="node-1")
        async with connect_redis(URL, name="bench") as exporter:  # SignalExporter
            for event in ("benchmark-start", "crash"):
                receipt = await exporter.send(
                    Set("signals.event", event, source="pbench")
                )
                report = await receipt.acks(timeout=5)  # publish_signal's result code
                print(event, int(report.result), [a.message for a in report.acks])


anyio.run(main)
