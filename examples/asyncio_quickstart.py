"""Quickstart under asyncio: the trio quickstart's twin, with anyio task groups.

Run it: python examples/asyncio_quickstart.py
(The same main() runs under trio too: anyio.run(main, backend="trio").)
"""

import asyncio

import anyio

from stateward import RAS, Resync, Set, StateActor, open_state


async def main():
    async with anyio.create_task_group() as tg:
        state = await tg.start(
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

        async with anyio.create_task_group() as workers:
            for n in range(3):
                workers.start_soon(worker, n)
        print("final:", await state.get("job"))
        await state.stop()

    # The form that needs no task group of your own:
    async with open_state({"job": {"bins": 10}}) as state:
        await state.send(Set("job.bins", 12))
        print("bins:", await state.get("job.bins"))


asyncio.run(main())
