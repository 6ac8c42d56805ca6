"""Large values a state lets go of: freed a slice at a time, never while shared."""

from __future__ import annotations

import copy
import gc
import threading
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest

from stateward import RAS, Checkpoints, Delete, Set, open_state
from stateward.actors import _reaper
from stateward.actors._reaper import Reaper
from stateward.actors._running import RUNNING
from stateward.tree import LARGE_NODE, Tree

if TYPE_CHECKING:
    from pathlib import Path

    from stateward import StateChanged


class _NoTasks:
    """A task group stand-in: the tests below call slice() themselves."""

    def start_soon(self, *args: object, **kwargs: object) -> None:
        pass


def _big() -> dict[str, Any]:
    return {
        "jobs": {f"k{i}": {"n": i, "tags": ["a", {"b": [i]}]} for i in range(300)},
        "wide": list(range(200)),
        "deep": {"a": {"b": {"c": [[{"d": 1}]]}}},
    }


def test_a_value_held_by_the_reaper_alone_is_taken_apart_in_slices() -> None:
    reaper = Reaper(_NoTasks())  # type: ignore[arg-type]
    value = _big()
    inner = value["jobs"]["k7"]["tags"][1]  # something else holds this one
    before = copy.deepcopy(inner)
    reaper.hold(value)
    assert not reaper.slice(10)  # this test's variable holds it too: untouched
    assert value == _big()
    del value
    slices = 0
    while reaper.held:
        assert reaper.slice(10)
        slices += 1
    assert slices > 50  # a slice at a time, not all at once
    assert inner == before  # what something else held was let go, not changed


class _Slices:
    """What the background thread did with the value marked ``"marked"``."""

    def __init__(self) -> None:
        self.made: list[bool] = []  # whether each slice took something out
        self.finished = threading.Event()
        self.ours: list[list[Any]] = []  # (it may still free another test's)


@pytest.fixture
def background(monkeypatch: pytest.MonkeyPatch) -> _Slices:
    """The background thread's slices of a marked value (small, no rest)."""
    slices = _Slices()
    real = _reaper.take_apart

    def counted(held: list[Any], budget: int = _reaper.SLICE) -> bool:
        ours = slices.ours
        if not ours and held and "marked" in held[0]:
            ours.append(held)
        if not ours or held is not ours[0]:
            return real(held, budget)
        done = real(held, 200)
        slices.made.append(done)
        if not done:
            slices.finished.set()
        return done

    monkeypatch.setattr(_reaper, "take_apart", counted)
    monkeypatch.setattr(_reaper, "PAUSE", 0)
    return slices


def test_a_value_let_go_beside_a_running_state_is_freed_in_slices_in_a_thread(
    background: _Slices,
) -> None:
    value = {"marked": 1, "jobs": {f"k{i}": {"n": i} for i in range(2_000)}}
    inner = value["jobs"]["k7"]  # something else holds this one
    box: list[Any] = [value]
    del value
    _reaper.free_in_background(box)  # no state runs: at once
    assert box == []
    assert background.made == []
    box.append({"marked": 1, "jobs": {f"k{i}": {"n": i} for i in range(2_000)}})
    with RUNNING.one():  # beside a running state
        _reaper.free_in_background(box)
        assert box == []
        assert background.finished.wait(10)
    assert len(background.made) > 10  # a slice at a time, not all at once
    assert background.made[-1] is False  # (until nothing was left)
    assert inner == {"n": 7}  # let go, not changed


def test_a_shared_value_waits_until_the_others_let_go() -> None:
    reaper = Reaper(_NoTasks())  # type: ignore[arg-type]
    shared = {"x": {"y": list(range(100))}}
    holder = [shared]
    reaper.hold(shared)
    del shared
    assert not reaper.slice()
    assert holder[0] == {"x": {"y": list(range(100))}}
    holder.clear()
    while reaper.held:
        assert reaper.slice(5)


def test_only_containers_are_held() -> None:
    reaper = Reaper(_NoTasks())  # type: ignore[arg-type]
    for value in ("text", 1, None, 2.5, True):
        reaper.hold(value)
    assert reaper.held == []


@pytest.fixture
def sliced(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each slice of a state's reaper took something out (small
    slices, no rest between them)."""
    made: list[bool] = []
    real = Reaper.slice

    def counted(self: Reaper, budget: int = 200) -> bool:
        done = real(self, budget)
        made.append(done)
        return done

    monkeypatch.setattr(_reaper, "PAUSE", 0)
    monkeypatch.setattr(Reaper, "slice", counted)
    return made


@pytest.mark.anyio
async def test_a_loaded_checkpoint_frees_the_tree_it_replaced_in_slices(
    tmp_path: Path, sliced: list[bool]
) -> None:
    # The tree a load replaced, and the copy its event carried, stay in the
    # history (and here with a subscriber) for a while: once nothing else
    # holds them, the state takes them apart a slice at a time, and never
    # changes what a subscriber still holds.
    heard: list[StateChanged] = []

    def keep(event: StateChanged) -> RAS:
        heard.append(event)
        return RAS.SUCCESS

    async with open_state({"small": 1}, history=2, action_log=2) as state:
        cp = Checkpoints(state, tmp_path)
        info = await cp.save()
        await state.send(Set("", _big()))
        await state.subscribe("", keep, name="keeper")
        await cp.load(info.path)
        core = state._core
        assert len(core.reaper.held) == 2
        for i in range(4):  # the history and the action log let go of the load
            await (await state.send(Set("n", i))).acks()
        (load, *_) = heard
        assert load.old_value == _big()  # held by the subscriber: untouched
        assert core.reaper.held
        del load
        heard.clear()  # the subscriber lets go too
        with anyio.fail_after(10):
            while core.reaper.held:
                # Each step pokes it (a task may still hold the load's event
                # for a turn or two: the reaper then waits for the next step).
                await state.send(Set("n", 5))
                await anyio.lowlevel.checkpoint()
        assert sum(sliced) > 10  # in slices
        assert await state.get("") == {"small": 1, "n": 5}


def test_a_value_held_twice_is_held_once() -> None:
    reaper = Reaper(_NoTasks())  # type: ignore[arg-type]
    value = {"a": [1, 2, {"b": 3}]}
    reaper.hold(value)
    reaper.hold(value)
    del value
    while reaper.held:
        assert reaper.slice(1)


def test_a_tree_hands_over_the_large_containers_it_lets_go_of() -> None:
    big = {f"k{i}": i for i in range(LARGE_NODE + 1)}
    small = {f"k{i}": i for i in range(LARGE_NODE)}
    tree = Tree({"a": big, "b": small, "c": list(range(LARGE_NODE + 1)), "d": 1})
    tree.apply(Set("a", 1))  # without a list to hand them to: nothing kept
    assert tree.dropped is None
    tree = Tree({"a": big, "b": small, "c": list(range(LARGE_NODE + 1)), "d": 1})
    tree.dropped = []
    tree.apply(Set("b", 2))  # small: freed as usual
    tree.apply(Set("d", 3))
    assert tree.dropped == []
    big_a = tree.lookup(("a",))
    tree.apply(Set("a", {}))  # replaced
    big_c = tree.lookup(("c",))
    tree.apply(Delete("c"))  # deleted
    assert len(tree.dropped) == 2
    assert tree.dropped[0] is big_a
    assert tree.dropped[1] is big_c


@pytest.mark.anyio
async def test_a_deleted_table_is_freed_in_slices(sliced: list[bool]) -> None:
    table = {f"k{i}": {"n": i} for i in range(3 * LARGE_NODE)}
    async with open_state({"jobs": table}, history=2, action_log=2) as state:
        del table
        await state.send(Delete("jobs"))
        core = state._core
        assert len(core.reaper.held) == 1  # the history holds it still
        assert core.tree.dropped == []
        n = 0
        with anyio.fail_after(10):
            while core.reaper.held:
                n += 1
                await state.send(Set("n", n))  # the history lets it go
                await anyio.lowlevel.checkpoint()
        assert sum(sliced) > 20  # in slices
        assert await state.get("") == {"n": n}


@pytest.mark.anyio
async def test_a_stopped_states_tree_is_freed_in_slices_once_let_go_beside_another(
    background: _Slices,
) -> None:
    # A stopped state's tree stays readable through its handle. Once nothing
    # reaches it, beside a running state, a background thread takes it
    # apart a slice at a time (freed by one call, a million leaves stop
    # every thread for about 0.1 s); with no state running, at once.
    slices = background.made
    async with open_state({"marked": 1, **_big()}) as alone:
        pass
    del alone
    gc.collect()  # (whether or not the handle was in a cycle)
    assert slices == []

    async with open_state({"other": 1}):
        async with open_state({"marked": 1, **_big()}) as stopped:
            await stopped.send(Set("jobs.k1.n", -1))
        assert stopped.get_nowait("jobs.k1") == {"n": -1, "tags": ["a", {"b": [1]}]}
        assert slices == []  # (not while the handle reaches it)
        kept = stopped.get_nowait("deep")  # a copy: the reader's own
        del stopped
        gc.collect()
        assert await anyio.to_thread.run_sync(background.finished.wait, 10)
    assert sum(slices) > 10  # in slices
    assert slices[-1] is False  # until nothing was left
    assert kept == {"a": {"b": {"c": [[{"d": 1}]]}}}
