"""Opening beside other states of the process: files decoded in short calls.

One decoding call holds the GIL for as long as it takes (0.65 s for a
million leaves), stopping every other state's loop in the process, whatever
thread makes it. A state (its snapshot) or a Store (its state file) that
opens alone decodes in one call, at its fastest; beside others, in short
calls.
"""

from __future__ import annotations

import copy
import functools
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from stateward import Set, StateActor, StateLockedError, Store, open_state
from stateward.actors.persistence import _snapshot

from .spy import sizes_decoded

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


@pytest.fixture
def sliced(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the snapshot bodies decoded in short calls."""
    return sizes_decoded(monkeypatch, _snapshot, "decode_in_slices")


async def test_a_state_opened_beside_another_decodes_its_snapshot_in_slices(
    tmp_path: Path, sliced: list[int]
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for d in (first, second):
        async with open_state({"jobs": {"a": 1}}, state_dir=d) as state:
            await state.send(Set("jobs.b", str(d)))
    async with open_state({}, state_dir=first) as state:
        assert sliced == []  # alone in the process: one call
        async with open_state({}, state_dir=second) as other:
            assert len(sliced) == 1
            assert await other.get("jobs") == {"a": 1, "b": str(second)}
        assert await state.get("jobs") == {"a": 1, "b": str(first)}
    # Both closed: alone again.
    async with open_state({}, state_dir=second):
        assert len(sliced) == 1


async def test_a_store_in_its_thread_counts_as_another_state(
    tmp_path: Path, sliced: list[int]
) -> None:
    async with open_state({}, state_dir=tmp_path / "a") as state:
        await state.send(Set("x", 1))
    with Store({"y": 2}, state_dir=str(tmp_path / "b")) as store:
        store.set("y", 3)
    with Store({}, state_dir=str(tmp_path / "b")) as store:
        assert sliced == []
        async with open_state({}, state_dir=tmp_path / "a") as state:
            assert await state.get("x") == 1
        assert len(sliced) == 1
        assert store.get("y") == 3


async def test_a_state_that_failed_or_was_cancelled_is_no_longer_counted(
    tmp_path: Path, sliced: list[int]
) -> None:
    async with open_state({}, state_dir=tmp_path / "a") as state:
        await state.send(Set("x", 1))
    async with open_state({}, state_dir=tmp_path / "b") as state:
        with pytest.raises(StateLockedError):
            async with open_state({}, state_dir=tmp_path / "b"):
                pass  # pragma: no cover
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(StateActor(initial={}).run)
            tg.cancel_scope.cancel()
    async with open_state({}, state_dir=tmp_path / "a") as state:
        assert await state.get("x") == 1
    assert sliced == []


async def test_a_store_file_opened_beside_a_state_is_decoded_in_slices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stateward.actors import _store_files

    calls = sizes_decoded(monkeypatch, _store_files, "loads_in_slices")
    path = str(tmp_path / "state.json")
    with Store({}, state_file=path) as store:
        store.set("jobs", {"a": [1, 2.5, None, "\u00e9"]})
    with Store({}, state_file=path) as store:
        assert calls == []  # alone: one call
    async with open_state({}):
        store = await anyio.to_thread.run_sync(
            functools.partial(Store, {}, state_file=path)
        )
        try:
            assert len(calls) == 1
            assert store.get("jobs") == {"a": [1, 2.5, None, "\u00e9"]}
        finally:
            await anyio.to_thread.run_sync(store.close)
        # The same refusals: NaN is not JSON.
        (tmp_path / "state.json").write_text('{"jobs": NaN}')
        with pytest.warns(RuntimeWarning, match="NaN is not JSON"):
            store = await anyio.to_thread.run_sync(
                functools.partial(Store, {"x": 1}, state_file=path)
            )
        try:
            assert len(calls) == 2
            assert store.get("") == {"x": 1}
        finally:
            await anyio.to_thread.run_sync(store.close)


async def test_a_closed_store_lets_go_of_its_tree_in_slices_beside_a_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A closed Store reads nothing more: its tree is freed at close, however
    # long the Store object lives; beside a running state, by the background
    # thread, a slice at a time (freed by one call, a million leaves stop
    # every thread ~65 ms).
    from stateward.actors import _reaper

    freed: list[object] = []
    real = _reaper._BACKGROUND.put

    def put(held: list[Any]) -> None:
        if held[0]:  # (a stopped tree's empty box, once the Store is gone)
            freed.append(copy.deepcopy(held[0]))  # (the value stays unshared)
        real(held)

    monkeypatch.setattr(_reaper._BACKGROUND, "put", put)
    tree = {"jobs": {f"k{i}": {"n": i} for i in range(100)}}

    def open_and_close() -> Store:
        store = Store(tree)
        store.set("jobs.k1.n", -1)
        store.close()
        return store

    alone = await anyio.to_thread.run_sync(open_and_close)
    assert freed == []
    assert alone._state._core.tree.root == {}  # (let go of all the same)
    assert "rev=1 closed" in repr(alone)
    async with open_state({}):
        beside = await anyio.to_thread.run_sync(open_and_close)
    assert len(freed) == 1
    assert freed[0] == {"jobs": {**tree["jobs"], "k1": {"n": -1}}}  # (the whole tree)
    assert beside._state._core.tree.root == {}
