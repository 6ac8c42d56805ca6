"""An owner process for the kill test: serve a persisted state until killed.

Usage: owner_child.py STATE_DIR URL BACKEND [POINT COUNT]. With POINT, the
process SIGKILLs itself at the COUNT-th pass of that crash point.
"""

from __future__ import annotations

import os
import signal
import sys

import anyio

from stateward import open_state
from stateward.actors._files import set_crash_hook
from stateward.remote import serve_redis


def main() -> None:
    state_dir, url, backend = sys.argv[1:4]
    if len(sys.argv) > 5:
        point, count = sys.argv[4], int(sys.argv[5])
        passes = 0

        def hook(name: str) -> None:
            nonlocal passes
            if name == point:
                passes += 1
                if passes >= count:
                    os.kill(os.getpid(), signal.SIGKILL)

        set_crash_hook(hook)

    async def run() -> None:
        async with (
            open_state({}, state_dir=state_dir) as state,
            # A short lease: the next owner, started once this one is
            # killed, waits for it to run out.
            serve_redis(state, url, name="jobs", lease=0.5),
        ):
            print("ready", flush=True)
            await anyio.sleep_forever()

    anyio.run(run, backend=backend)


if __name__ == "__main__":
    main()
