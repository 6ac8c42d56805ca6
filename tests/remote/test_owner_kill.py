"""The owner SIGKILLed between journal commit and reply, and between reply and XACK.

A client sends actions with unique ids and re-sends what is not answered; the
owner process is killed at a named point again and again and restarted. At
the end every acknowledged action is in the state, and the journal holds
every action id exactly once: nothing lost, nothing applied twice.
"""

from __future__ import annotations

import collections
import random
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from stateward import Set
from stateward.actors.persistence import replay_files
from stateward.remote import connect_redis

pytestmark = pytest.mark.anyio

CHILD = Path(__file__).with_name("owner_child.py")
POINTS = ["remote-applied", "remote-replied"]


def _start(state_dir, url, backend, point=None, count=0):
    args = [sys.executable, str(CHILD), str(state_dir), url, backend]
    if point is not None:
        args += [point, str(count)]
    child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child


async def _kill_loop(redis, tmp_path, kills_wanted):
    rng = random.Random(kills_wanted)
    state_dir = tmp_path / "state"
    backend = "trio" if kills_wanted % 2 else "asyncio"
    acked: list[str] = []
    kills = 0
    n = kills_wanted * 3 + 10
    async with connect_redis(redis.url, name="jobs", resend_after=0.2) as remote:
        child = await anyio.to_thread.run_sync(
            _start, state_dir, redis.url, backend, rng.choice(POINTS), rng.randint(1, 3)
        )
        done = anyio.Event()

        async def sender():
            for i in range(n):
                receipt = await remote.send(Set(f"k.{i}", i))
                acked.append(receipt.action_id)
            done.set()

        with anyio.fail_after(300):
            async with anyio.create_task_group() as tg:
                tg.start_soon(sender)
                while not done.is_set():
                    with anyio.move_on_after(0.05):
                        await done.wait()
                    if child.poll() is None:
                        continue
                    kills += 1
                    child.stdout.close()
                    point = rng.choice(POINTS) if kills < kills_wanted else None
                    child = await anyio.to_thread.run_sync(
                        _start, state_dir, redis.url, backend, point, rng.randint(1, 3)
                    )
        child.terminate()
        child.wait(timeout=10)
        child.stdout.close()
    _, entries = replay_files(str(state_dir), 0, _revision(state_dir))
    ids = collections.Counter(e.action_id for e in entries)
    assert set(acked) <= set(ids)  # nothing acknowledged is lost
    assert all(count == 1 for count in ids.values())  # nothing applied twice
    tree, _ = replay_files(str(state_dir), 0, _revision(state_dir))
    assert tree.read("k") == {str(i): i for i in range(n)}
    return kills, n, len(acked)


def _revision(state_dir) -> int:
    from stateward.actors.persistence import inspect_directory

    found = inspect_directory(str(state_dir))
    assert found.revision is not None
    return found.revision


@pytest.mark.parametrize(
    "kills_wanted",
    [
        pytest.param(4, id="quick"),
        # 20 kills per backend (the two points alternate), in the slow group
        pytest.param(20, id="full-asyncio", marks=pytest.mark.slow),
        pytest.param(21, id="full-trio", marks=pytest.mark.slow),
    ],
)
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_owner_killed_between_commit_reply_and_xack(
    redis, tmp_path, kills_wanted
):
    kills, sent, acked = await _kill_loop(redis, tmp_path, kills_wanted)
    print(
        f"owner SIGKILLed {kills} times at {POINTS}: {sent} sent, {acked} "
        "acknowledged, 0 lost, 0 applied twice"
    )
    assert kills >= kills_wanted - 1
