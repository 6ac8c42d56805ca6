"""The revision feed: resume a subscriber from a revision, watch, time travel.

Run: python examples/feed.py
"""

from __future__ import annotations

import anyio

from stateward import CompactedError, Set, StateChanged, open_state


async def main() -> None:
    async with open_state({"jobs": {}}, history=100) as state:
        for n in range(5):
            await state.send(Set(f"jobs.j{n}.status", "queued"))
        resume_at = 2  # e.g. the last revision a dashboard saw before it left
        await state.send(Set("jobs.j0.status", "done"))

        # Replay what was missed after revision 2, then follow live changes.
        watch = state.watch("jobs.*.status", from_revision=resume_at)
        async for event in watch:
            assert isinstance(event, StateChanged)
            print(f"rev {event.revision}: {event.path} = {event.new_value}")
            if event.revision == state.revision:
                break
        await watch.aclose()

        print("at revision 1:", await state.at_revision(1))

    async with open_state({}, history=3) as state:
        for n in range(10):
            await state.send(Set("n", n))
        try:
            await state.subscribe("n", print, from_revision=2)
        except CompactedError as exc:
            print(f"compacted: resume from >= {exc.oldest} after re-reading")


if __name__ == "__main__":
    anyio.run(main)
