"""A persisted state's Store writes: applied in the loop callback, durable on return.

When the state actor is idle, the loop callback that brings a Store write
applies it and queues its commit to the persister (as the actor would on
its next turn), so that the record reaches the journal's worker one turn of
the loop sooner. These tests hold that shortcut to the actor's guarantees:
the call returns only once its record is on disk, snapshots are still
taken when due, and what every call was told comes back after a restart.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest
from parked import parked

from stateward import Set, Store, open_state
from stateward.actors._handoff import ThreadSignal

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.anyio
async def test_an_idle_persisted_state_applies_a_threads_write_in_the_callback(
    tmp_path: Path,
) -> None:
    async with open_state({"n": 0}, state_dir=tmp_path) as state:
        with anyio.fail_after(5):
            await parked(state)
        request = state._request(Set("n", 1), None, ThreadSignal())
        state._put_from_thread(request)  # as the Store's loop callback does
        # No checkpoint in between: applied and queued for the journal, not
        # answered before its record is on disk.
        assert request.receipt is not None
        assert request.receipt.revision == state.revision == 1
        answer = request.done
        assert isinstance(answer, ThreadSignal)
        with anyio.fail_after(10):
            await anyio.to_thread.run_sync(answer.block, lambda: True)
        assert request.error is None
        assert state._core.persister.durable_revision >= 1  # type: ignore[union-attr]
        await state.send(Set("n", 2))  # and the actor goes on after it
    async with open_state(state_dir=tmp_path) as state:
        assert state.get_nowait("n") == 2


@pytest.mark.anyio
async def test_with_the_journals_queue_full_a_threads_write_waits_for_the_actor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_state({"n": 0}, state_dir=tmp_path) as state:
        persister = state._core.persister
        assert persister is not None
        monkeypatch.setattr(persister, "has_room", lambda: False)
        with anyio.fail_after(5):
            await parked(state)
        request = state._request(Set("n", 1), None, ThreadSignal())
        state._put_from_thread(request)
        assert request.receipt is None  # in the mailbox: the actor takes it
        answer = request.done
        assert isinstance(answer, ThreadSignal)
        with anyio.fail_after(10):
            await anyio.to_thread.run_sync(answer.block, lambda: True)
        assert request.receipt is not None
        assert persister.durable_revision == 1


@pytest.mark.anyio
async def test_a_snapshot_due_after_a_write_in_the_callback_is_taken(
    tmp_path: Path,
) -> None:
    # Every write applied in the callback, none by the actor's own step: the
    # snapshot they make due is still taken (the actor is woken for it).
    async with open_state({"n": 0}, state_dir=tmp_path, snapshot_every=2) as state:
        persister = state._core.persister
        assert persister is not None
        with anyio.fail_after(10):
            for i in range(1, 3):
                await parked(state)
                request = state._request(Set("n", i), None, ThreadSignal())
                state._put_from_thread(request)
                assert request.receipt is not None  # applied in the callback
                answer = request.done
                assert isinstance(answer, ThreadSignal)
                await anyio.to_thread.run_sync(answer.block, lambda: True)
            while persister.snapshots.count < 1:  # the file, written in a thread
                await anyio.lowlevel.checkpoint()
        assert persister.snapshots.last == 2


def test_store_threads_through_snapshots_lose_nothing(
    tmp_path: Path, backend: str
) -> None:
    # Four threads, a snapshot (and a rotation of the journal) every few
    # records: the snapshots due after a write applied in the callback are
    # still taken, and what every call was told is durable comes back. The
    # threads write until three snapshots were written meanwhile (however
    # slowly this machine makes them), and at least 100 records each.
    done: dict[str, int] = {}
    with Store(
        {"k": {}},
        state_dir=tmp_path,
        snapshot_every=7,
        keep_snapshots=2,
        backend=backend,
    ) as store:
        persister = store._state._core.persister
        assert persister is not None

        def caller(t: int) -> None:
            i = 0
            while i < 100 or persister.snapshots.count < 3:
                assert i < 5_000, "snapshots not taken while the threads write"
                store.set(f"k.t{t}", i)
                done[f"t{t}"] = i
                i += 1

        threads = [threading.Thread(target=caller, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
            assert not thread.is_alive()
        assert len(done) == 4
        assert min(done.values()) >= 99
        assert store.get("k") == done
        revision = store._state.revision
        assert persister.durable_revision == revision == sum(done.values()) + 4
        assert persister.snapshots.count >= 3
    with Store(state_dir=tmp_path, backend=backend) as store:  # recovery
        assert store.get("k") == done
        assert store._state.revision == revision
