"""What the feed tests share: a seeded action mix, event keys, a recorder."""

from __future__ import annotations

import contextlib
import random
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from stateward import (
    Action,
    ActionRejectedError,
    Delete,
    Merge,
    Ping,
    Receipt,
    Resync,
    Set,
    StateChanged,
    Transaction,
    open_state,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from contextlib import AbstractAsyncContextManager
    from pathlib import Path

    import pytest

    from stateward import StateHandle


INITIAL: dict[str, Any] = {"l": [0, 1, 2]}
"""The tree the action mix starts from (it deletes and appends in ``l``)."""


def open_files_feed(
    state_dir: Path, *, snapshot_every: int = 20
) -> AbstractAsyncContextManager[StateHandle]:
    """A persisted state whose ring holds 5 revisions and whose files keep
    every snapshot: a feed or a time travel further back comes from the files.
    Reopens what *state_dir* holds (then :data:`INITIAL` is ignored)."""
    return open_state(
        INITIAL,
        state_dir=state_dir,
        history=5,
        snapshot_every=snapshot_every,
        keep_snapshots=100,
    )


def actions(seed: int, count: int) -> list[Action]:
    """Sets (creating dicts), deletes (shifting lists), merges, transactions
    (some failing midway), pings and root writes, each with a source and a
    payload."""
    rng = random.Random(seed)
    out: list[Action] = []
    for n in range(count):
        roll = rng.random()
        key = f"k{rng.randrange(6)}"
        meta: dict[str, Any] = {"source": f"w{n % 3}", "payload": {"n": n}}
        if roll < 0.3:
            out.append(Set(f"d.{key}.v", n, **meta))
        elif roll < 0.4:
            out.append(Delete(f"d.{key}", **meta))
        elif roll < 0.5:
            out.append(Set(f"l.{rng.randrange(4)}", n, **meta))  # update or append
        elif roll < 0.6:
            out.append(Delete(f"l.{rng.randrange(3)}", **meta))
        elif roll < 0.7:
            out.append(Merge(f"m.{key}", {"a": n, "b": {"c": n}}, **meta))
        elif roll < 0.8:
            out.append(Transaction([Set(f"t.{key}", n), Delete(f"d.{key}")], **meta))
        elif roll < 0.85:
            out.append(Ping(f"d.{key}", **meta))
        elif roll < 0.9:
            # Fails at its last step, after creating dicts on the way (undone).
            fails = [Set(f"n.{key}.a", n), Set("x", n), Set("x.y", 1)]
            out.append(Transaction(fails, **meta))
        elif roll < 0.93:
            out.append(Set("", {"l": [0, 1, 2], "reset": n}, **meta))
        else:
            out.append(Set("l", [n, n + 1, n + 2], **meta))
    return out


def event_key(event: StateChanged) -> tuple[Any, ...]:
    """Everything an event says, for comparing feeds."""
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


class Recorder:
    """A subscriber handler that records events; waits are woken, not polled."""

    def __init__(self, key: Callable[[StateChanged], Any] = event_key) -> None:
        self.got: list[Any] = []
        self._key = key
        self._waiters: list[tuple[int, anyio.Event]] = []

    def __call__(self, event: StateChanged | Resync) -> int:
        assert isinstance(event, StateChanged), event  # a gap would be a failure
        self.got.append(self._key(event))
        for count, reached in self._waiters:
            if len(self.got) >= count:
                reached.set()
        return 1

    async def wait_for(self, count: int) -> None:
        """Wait until *count* events are recorded (a hang fails in 10 s)."""
        if len(self.got) >= count:
            await anyio.lowlevel.checkpoint()
            return
        reached = anyio.Event()
        self._waiters.append((count, reached))
        with anyio.fail_after(10):
            await reached.wait()


async def collect(
    state: StateHandle, pattern: str, since: int, count: int
) -> list[Any]:
    """Subscribe from *since*; return the first *count* events, plus any that
    arrive within a few more checkpoints (so a duplicate would show)."""
    recorder = Recorder()
    sub = await state.subscribe(pattern, recorder, from_revision=since)
    await recorder.wait_for(count)
    for _ in range(5):
        await anyio.lowlevel.checkpoint()
    await sub.unsubscribe()
    return recorder.got


async def send_all(state: StateHandle, todo: list[Action]) -> list[Receipt]:
    """Send *todo* one by one (rejected ones skipped); return the receipts."""
    receipts = []
    for action in todo:
        try:
            receipts.append(await state.send(action))
        except ActionRejectedError:
            continue
    return receipts


async def all_acked(receipts: list[Receipt]) -> None:
    """Wait until every subscriber asked about *receipts* answered."""
    for receipt in receipts:
        assert (await receipt.acks(timeout=10)).ok


async def resume_routed_lazily(
    state: StateHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resume ``d`` from revision 0, beside a stopper at ``d.k1``, and check it.

    No delivery is routed before ``subscribe`` returns (the history is
    committed: it is routed as the subscriber's task takes it), one per
    revision afterwards, and the feed is the live one, the stopper's hiding
    included (it hides what it got from below from those above it).
    """
    from stateward.actors import _feed_replay

    routed = 0
    real = _feed_replay.new_receipt

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal routed
        routed += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(_feed_replay, "new_receipt", counted)
    await state.subscribe("d.k1", lambda event: 1, stop_bubbling=True)
    live = Recorder()
    await state.subscribe("d", live)
    await all_acked(await send_all(state, actions(11, 150)))
    assert len(live.got) > 20
    recorder = Recorder()
    routed = 0
    sub = await state.subscribe("d", recorder, from_revision=0)
    assert routed == 0  # none routed yet
    await recorder.wait_for(len(live.got))
    assert routed == len({event[0] for event in live.got})  # one per revision
    await sub.unsubscribe()
    assert recorder.got == live.got


class Writes:
    """How many sends a :func:`writing` task has made so far."""

    count = 0


@contextlib.asynccontextmanager
async def writing(state: StateHandle) -> AsyncIterator[Writes]:
    """A task that keeps writing ``w`` while the block runs; counts its sends."""
    writes = Writes()
    stop = anyio.Event()

    async def run() -> None:
        while not stop.is_set():
            await state.send(Set("w", writes.count))
            writes.count += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await anyio.lowlevel.checkpoint()
        try:
            yield writes
        finally:
            stop.set()
