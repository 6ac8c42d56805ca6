"""Quickstart under trio: a state actor, a subscriber actor and three workers.

Run it: python examples/trio_quickstart.py
"""

import trio

from stateward import RAS, Resync, Set, StateActor


async def main():
    async with trio.open_nursery() as nursery:
        state = await nursery.start(
            StateActor(initial={"job": {"bins": 10, "sorted": 0}}).run
        )

        async def display(event):  # a subscriber actor's handler
            if isinstance(event, Resync):  # it fell behind: re-read instead
                print("resync:", state.get_nowait("job"))
                return RAS.SUCCESS
            print(event.path, event.old_value, "->", event.new_value)
            return RAS.SUCCESS

        await state.subscribe("job.*", display, name="display")

        async def worker(n):  # worker tasks send typed actions
            receipt = await state.send(Set("job.sorted", n, source=f"worker-{n}"))
            report = await receipt.acks(
                timeout=1.0
            )  # await the subscribers' acknowledgements
            assert report.ok, report

        async with trio.open_nursery() as workers:
            for n in range(3):
                workers.start_soon(worker, n)
        print("final:", await state.get("job"))
        await state.stop()


trio.run(main)
