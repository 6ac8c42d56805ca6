"""A state in memory and the garbage collector: frozen when large, when a full
collection lasts too long, or when told."""

from __future__ import annotations

import gc
import weakref
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest

from stateward import InvalidActionError, Set, StateActor, Store, open_state
from stateward.actors import _gc_freeze

if TYPE_CHECKING:
    from pathlib import Path

BIG = {"jobs": {f"k{i}": {"n": i} for i in range(200)}}  # past LARGE below


@pytest.fixture
def freezes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    frozen: list[str] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append("freeze"))
    monkeypatch.setattr(_gc_freeze, "FREEZE_EVERY", 10)
    monkeypatch.setattr(_gc_freeze, "LARGE", 2_000)
    # (a full collection of the test process may last long: only the tests
    # of the watch make every one count)
    monkeypatch.setattr(_gc_freeze, "LONG", float("inf"))
    return frozen


@pytest.mark.anyio
async def test_a_large_state_in_memory_freezes_once_loaded_and_as_it_is_written(
    freezes: list[str],
) -> None:
    async with open_state(BIG) as state:
        assert freezes == ["freeze"]  # the loaded tree
        for i in range(35):
            await state.send(Set("n", i))
    assert len(freezes) == 4  # and at revisions 10, 20 and 30


@pytest.mark.anyio
async def test_a_small_state_in_memory_leaves_the_collector_alone(
    freezes: list[str],
) -> None:
    async with open_state({"n": 0}) as state:
        for i in range(35):
            await state.send(Set("n", i))
    assert freezes == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("choice", "tree", "expected"), [(False, BIG, 0), (True, {}, 4), (None, {}, 0)]
)
async def test_freeze_gc_decides_for_a_state_in_memory(
    freezes: list[str], choice: bool | None, tree: object, expected: int
) -> None:
    async with open_state(tree, freeze_gc=choice) as state:
        for i in range(35):
            await state.send(Set("n", i))
    assert len(freezes) == expected


def test_a_store_in_memory_follows_the_same_rule(
    freezes: list[str], backend: str
) -> None:
    # Its writes are applied in the loop's callback when the actor is idle:
    # they count towards the next freeze all the same.
    with Store(BIG, backend=backend) as store:
        for i in range(15):
            store.set("n", i)
        store._on_loop(lambda: None)  # the last write's step has ended
        assert len(freezes) == 2  # loaded, and at revision 10
    with Store({"n": 0}, backend=backend) as store:
        for i in range(15):
            store.set("n", i)
    assert len(freezes) == 2
    with Store(BIG, freeze_gc=False, backend=backend) as store:
        store.set("n", 1)
    assert len(freezes) == 2


@pytest.mark.anyio
async def test_a_small_state_in_memory_freezes_once_a_full_collection_lasts_long(
    freezes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A state that grows large (or keeps a long history) from a small initial
    # tree: what tells is a full collection that stopped it for too long.
    async with open_state({"n": 0}) as state:
        assert _gc_freeze._time_full in gc.callbacks
        for i in range(5):
            await state.send(Set("n", i))
        gc.collect(1)  # (a younger generation only: no full collection)
        await state.send(Set("n", 5))
        monkeypatch.setattr(_gc_freeze, "LONG", -1.0)  # every full one is too long
        gc.collect(1)
        await state.send(Set("n", 6))
        assert freezes == []
        gc.collect()
        assert freezes == []  # (frozen by the state's loop, not the callback)
        await state.send(Set("n", 7))
        assert freezes == ["freeze"]
        assert _gc_freeze._time_full not in gc.callbacks  # (watching is done)
        for i in range(8, 20):
            await state.send(Set("n", i))
        assert len(freezes) == 2  # then every FREEZE_EVERY (10) revisions
    assert _gc_freeze._open == 0  # it counted as a state that froze


@pytest.mark.anyio
async def test_the_watch_ends_with_the_last_state_that_watches(
    freezes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        open_state({"n": 0}) as one,
        open_state({"n": 0}) as two,
        open_state({}, freeze_gc=False) as never,
    ):
        assert gc.callbacks.count(_gc_freeze._time_full) == 1
        await one.stop()
        assert _gc_freeze._time_full in gc.callbacks  # (two watches)
        monkeypatch.setattr(_gc_freeze, "LONG", -1.0)
        gc.collect()
        await two.send(Set("n", 1))
        await never.send(Set("n", 1))
        assert freezes == ["freeze"]  # two froze; never did not
        assert _gc_freeze._time_full not in gc.callbacks
    assert _gc_freeze._time_full not in gc.callbacks
    assert freezes == ["freeze"]


class _Cycle:
    """Cyclic garbage, as an application (or an event loop) makes it."""

    def __init__(self) -> None:
        self.me = self


@pytest.mark.anyio
async def test_a_freeze_does_not_keep_the_young_cyclic_garbage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Frozen, garbage stays until gc.unfreeze(): a long-running state that
    # froze the young generations as they were kept what was dropped there
    # (a few hundred objects a freeze, for good). Collected first, none.
    monkeypatch.setattr(_gc_freeze, "FREEZE_EVERY", 10)
    dropped: list[weakref.ref[_Cycle]] = []
    async with open_state({"n": 0}, freeze_gc=True) as state:
        for i in range(55):  # five freezes, each just after a cycle was dropped
            dropped.append(weakref.ref(_Cycle()))
            await state.send(Set("n", i))
        assert gc.get_freeze_count() > 0
        gc.collect()  # (a full collection: it does not see what is frozen)
        assert [ref for ref in dropped if ref() is not None] == []


def test_freeze_gc_must_be_a_bool_or_none() -> None:
    with pytest.raises(InvalidActionError, match="freeze_gc"):
        StateActor(freeze_gc="yes")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_closed_state_leaves_nothing_frozen(tmp_path: Path) -> None:
    # The state's own objects form cycles (the actor and its persister point
    # at each other, and at the tree). Frozen while it ran (here at its
    # snapshots), they would keep the closed state's tree alive for good: the
    # last state that froze unfreezes when it closes.
    async with open_state({"n": 0}, state_dir=tmp_path, snapshot_every=5) as state:
        async with open_state(BIG, freeze_gc=True) as other:
            for i in range(12):
                await state.send(Set("n", i))
        # (the other state closed first: this one still runs frozen)
        assert gc.get_freeze_count() > 0
        await state.send(Set("n", 99))
        core = weakref.ref(state._core)
    assert gc.get_freeze_count() == 0
    assert await state.get("n") == 99  # a closed state still reads
    del state, other
    with anyio.fail_after(10):  # (a callback of the loop may hold it a turn)
        while core() is not None:  # the actor, and the tree it held, go
            gc.collect()
            await anyio.lowlevel.checkpoint()
