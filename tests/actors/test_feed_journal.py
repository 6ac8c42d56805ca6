"""The revision feed beyond the history ring: rebuilt from snapshot + journal.

A persisted state resumes a feed from any revision its files still reach,
across restarts, with the same events (ids, sources, payloads, pings and
derived values included) as a subscriber that was there all along.
"""

from __future__ import annotations

import contextlib
import random
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from stateward import (
    ActionRejectedError,
    CompactedError,
    Delete,
    Merge,
    Ping,
    Set,
    StateChanged,
    Transaction,
    open_state,
)

if TYPE_CHECKING:
    from pathlib import Path

    from stateward import Action

pytestmark = pytest.mark.anyio


def _actions(seed: int, count: int) -> list[Action]:
    rng = random.Random(seed)
    out: list[Action] = []
    for n in range(count):
        roll = rng.random()
        key = f"k{rng.randrange(5)}"
        meta = {"source": f"w{n % 3}", "payload": {"n": n}}
        if roll < 0.35:
            out.append(Set(f"d.{key}", n, **meta))
        elif roll < 0.45:
            out.append(Delete(f"d.{key}", **meta))
        elif roll < 0.55:
            out.append(Set(f"l.{rng.randrange(4)}", n, **meta))
        elif roll < 0.62:
            out.append(Delete(f"l.{rng.randrange(3)}", **meta))
        elif roll < 0.72:
            out.append(Merge(f"m.{key}", {"a": n}, **meta))
        elif roll < 0.82:
            out.append(Transaction([Set(f"t.{key}", n), Delete(f"d.{key}")], **meta))
        elif roll < 0.9:
            out.append(Ping(f"d.{key}", **meta))
        else:
            out.append(Set("l", [n, n + 1], **meta))
    return out


def _key(event: StateChanged) -> tuple[Any, ...]:
    return (
        event.revision,
        event.path,
        event.kind,
        event.old_value,
        event.new_value,
        event.action_id,
        event.source,
        event.payload,
    )


async def _collect(state: Any, since: int, count: int) -> list[Any]:
    got: list[Any] = []
    sub = await state.subscribe(
        "**", lambda e: got.append(_key(e)) or 1, from_revision=since
    )
    with anyio.fail_after(10):
        while len(got) < count:  # noqa: ASYNC110 - polls what the subscriber adds
            await anyio.sleep(0.001)
    for _ in range(5):
        await anyio.lowlevel.checkpoint()
    await sub.unsubscribe()
    return got


async def test_resume_beyond_the_ring_and_across_a_restart(tmp_path: Path) -> None:
    live: list[Any] = []
    async with open_state(
        {"l": [0, 1, 2]},
        state_dir=tmp_path,
        history=5,
        snapshot_every=25,
        keep_snapshots=100,
    ) as state:
        sub = await state.subscribe("**", lambda e: live.append(_key(e)) or 1)
        await state.derive("count", "d", lambda d: len(d or {}))
        for action in _actions(4, 120):
            with contextlib.suppress(ActionRejectedError):
                await state.send(action)
        with anyio.fail_after(10):
            while not sub._sub.idle():  # noqa: ASYNC110
                await anyio.sleep(0.001)
        last = state.revision
        for since in range(0, last + 1, 3):
            expected = [e for e in live if e[0] > since]
            assert await _collect(state, since, len(expected)) == expected, since
    async with open_state(state_dir=tmp_path, history=5, keep_snapshots=100) as state:
        assert state.revision == last
        for since in range(0, last + 1, 7):
            expected = [e for e in live if e[0] > since]
            assert await _collect(state, since, len(expected)) == expected, since


async def test_compacted_where_the_files_no_longer_reach(tmp_path: Path) -> None:
    async with open_state(
        {}, state_dir=tmp_path, history=5, snapshot_every=10, keep_snapshots=2
    ) as state:
        for n in range(60):
            await state.send(Set("n", n))
        with pytest.raises(CompactedError) as caught:
            await state.subscribe("n", lambda e: 1, from_revision=3)
        oldest = caught.value.oldest
        assert 3 < oldest <= 55
        got = await _collect(state, oldest, 60 - oldest)
        assert [e[0] for e in got] == list(range(oldest + 1, 61))
