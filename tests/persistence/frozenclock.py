"""For tests on trio's MockClock whose work also runs in worker threads."""

from __future__ import annotations

import trio.testing


async def settle() -> None:
    """Wait until every task is blocked and no worker thread runs.

    With the clock frozen, this is the moment everything a clock jump started
    (file work in threads included) has finished: no polling, no real time.
    """
    while True:
        await trio.testing.wait_all_tasks_blocked()
        if trio.testing.active_thread_count() == 0:
            return
        await trio.testing.wait_all_threads_completed()
