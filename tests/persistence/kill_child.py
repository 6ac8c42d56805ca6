"""The D1 child: runs the real service and reports each acknowledgement.

Usage: python kill_child.py STATE_DIR BACKEND SEED COUNT [CRASH_POINT HIT]

Prints "ready <revision>" once recovered, then "ack <index>" after each
durable send returned (flushed at once), then "done". With CRASH_POINT, the
process SIGKILLs itself at the HIT-th time it passes that named point. With
STATEWARD_KILL_REPLAY=1 in its environment, its snapshots are rebuilt by a
new process (``snapshot_child="auto"`` takes that way for any tree), which
may outlive it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

import anyio

from stateward import ActionRejectedError, open_state
from stateward.actors._files import set_crash_hook

sys.path.insert(0, os.path.dirname(__file__))

from workload import actions

SNAPSHOT_EVERY = 7
KEEP = 2


def main() -> None:
    state_dir, backend, seed, count = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        int(sys.argv[4]),
    )
    if len(sys.argv) > 5:
        point, hit = sys.argv[5], int(sys.argv[6])
        hits = 0

        def hook(name: str) -> None:
            nonlocal hits
            if name == point:
                hits += 1
                if hits == hit:
                    os.kill(os.getpid(), signal.SIGKILL)

        set_crash_hook(hook)

    if os.environ.get("STATEWARD_KILL_REPLAY") == "1":
        from stateward.actors import _snapshots

        _snapshots.REPLAY_FROM_BYTES = 0

    todo = actions(seed, count)

    async def run() -> None:
        async with open_state(
            state_dir=state_dir, snapshot_every=SNAPSHOT_EVERY, keep_snapshots=KEEP
        ) as state:
            print("ready", state.revision, flush=True)
            for i, action in enumerate(todo):
                with contextlib.suppress(ActionRejectedError):
                    await state.send(action, durable=True)
                print("ack", i, flush=True)
        print("done", flush=True)

    anyio.run(run, backend=backend)


if __name__ == "__main__":
    main()
