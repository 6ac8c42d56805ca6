"""Two processes, one state: an owner serves it over Redis, a worker writes to it.

Run it with a Redis server reachable at $REDIS_URL (default
redis://127.0.0.1:6379). The owner keeps the state (and its journal) in
./remote-state with a local subscriber; the worker, another process, sends
actions and awaits what the owner's subscriber did with each.
"""

from __future__ import annotations

import os
import subprocess
import sys

import anyio

from stateward import RAS, Set, open_state
from stateward.remote import connect_redis, serve_redis

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")


async def owner(state_dir: str) -> None:
    async with (
        open_state({"jobs": {}}, state_dir=state_dir) as state,
        serve_redis(state, URL, name="jobs"),
    ):

        def checker(event):  # a local subscriber actor, asked about every change
            if event.new_value == "failed":
                return RAS.ERROR, f"{event.path} failed"
            return RAS.SUCCESS

        await state.subscribe("jobs", checker, name="checker")
        print("owner: ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)  # until the worker is done


async def worker() -> None:
    async with connect_redis(URL, name="jobs") as state:
        for job, phase in [("build", "done"), ("test", "failed")]:
            receipt = await state.send(Set(f"jobs.{job}", phase, source="worker"))
            report = await receipt.acks(timeout=5)
            print(
                f"worker: jobs.{job} = {phase!r} at revision {receipt.revision}: "
                f"{report.result.name} {[a.message for a in report.acks if a.message]}"
            )
        print("worker: state on the owner:", await state.get("jobs"))


def main() -> None:
    if sys.argv[1:] == ["owner"]:
        anyio.run(owner, sys.argv[2] if len(sys.argv) > 2 else "remote-state")
        return
    if sys.argv[1:] == ["worker"]:
        anyio.run(worker)
        return
    # Both roles, each in its own process.
    owner_proc = subprocess.Popen(
        [sys.executable, __file__, "owner"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner_proc.stdout is not None
    assert owner_proc.stdin is not None
    print(owner_proc.stdout.readline().strip())
    subprocess.run([sys.executable, __file__, "worker"], check=True)
    owner_proc.stdin.write("done\n")
    owner_proc.stdin.close()
    owner_proc.wait(timeout=30)


if __name__ == "__main__":
    main()
