"""The whole tree of a large Store, read (get, save) without stopping its actor."""

from __future__ import annotations

import json
import logging
import marshal
import os
import random
import threading
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from stateward import JsonSerializer, Set, Store, open_state
from stateward.actors import _large_reads
from stateward.actors._large_reads import FRAME_VALUES, Rebuild, encode_frames
from stateward.actors.persistence import _fork
from stateward.actors.persistence._fork import ForkedBody

from .forks import assert_reaped

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path


@pytest.fixture(autouse=True)
def _forks_are_cheap(monkeypatch: pytest.MonkeyPatch) -> None:
    # A value is forked for when its copy would take longer than the latest
    # fork did: at the start of each test, as if that took no time (the
    # budget is then COPY_AT_LEAST values).
    monkeypatch.setattr(_fork, "copy_budget", _fork.COPY_AT_LEAST)
    monkeypatch.setattr(_large_reads, "forking", True)  # (a failed child stops it)


def _large(n: int = 3 * _fork.COPY_AT_LEAST) -> dict[str, Any]:
    return {"jobs": {f"k{i}": {"n": i} for i in range(n)}, "x": 0}


# -- the frames -----------------------------------------------------------------


def _random(rng: random.Random, depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    roll = rng.random()
    if depth > 4 or roll < 0.3 or budget[0] <= 0:
        return rng.choice([1, 1.0, True, False, None, "s", "", -7, 2**70, "é\n"])
    size = rng.choice([0, 1, 3, 50, 700, 2 * FRAME_VALUES + 1])
    if roll < 0.65:
        keys = [f"k{rng.randrange(10**6)}" for _ in range(size)]
        return {k: _random(rng, depth + 1, budget) for k in keys}
    return [_random(rng, depth + 1, budget) for _ in range(size)]


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON is: types (True is not 1, 1.0 is not 1) and key order too."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _count(value: Any) -> int:
    if type(value) is dict:
        return 1 + sum(_count(v) for v in value.values())
    if type(value) is list:
        return 1 + sum(_count(v) for v in value)
    return 1


@pytest.mark.parametrize("seed", range(60))
def test_frames_rebuild_any_tree_exactly_and_stay_small(seed: int) -> None:
    rng = random.Random(seed)
    tree = _random(rng, 0, [30_000])
    rebuild = Rebuild()
    frames = rebuild.frames(encode_frames(tree))
    for frame in frames:
        # Each frame is small, whatever the shape: it bounds a decode's pause.
        values = sum(_count(chunk) for _, chunk in marshal.loads(frame))
        assert values <= 2 * FRAME_VALUES + len(marshal.loads(frame))
        rebuild.feed(frame)
    assert _same(rebuild.root, tree)


def test_a_large_flat_dict_is_split_into_many_frames() -> None:
    tree = _large(10 * FRAME_VALUES)
    rebuild = Rebuild()
    frames = rebuild.frames(encode_frames(tree))
    assert len(frames) >= 10
    for frame in frames:
        rebuild.feed(frame)
    assert _same(rebuild.root, tree)


# -- the Store ------------------------------------------------------------------


class _Held:
    """Replaces ``_fork.start``: the real child, whose read waits for a release."""

    def __init__(self) -> None:
        self.forked = threading.Event()
        self.release = threading.Event()
        self.read_began = threading.Event()
        self.read_done = threading.Event()
        self.children: list[ForkedBody] = []
        self.real = _fork.start

    def __call__(
        self, root: Any, dumps: Callable[[Any], bytes] | None = None
    ) -> ForkedBody:
        child = self.real(root, dumps)
        assert child is not None, "this platform forks"
        release = self.release

        read_began, read_done = self.read_began, self.read_done

        class Held(ForkedBody):
            def read(self, timeout: float | None = None) -> bytes:
                read_began.set()
                try:
                    release.wait(30)
                    return super().read(timeout)
                finally:
                    read_done.set()

        held = Held(child.pid, child.fd)
        self.children.append(held)
        self.forked.set()
        return held


def _while_held(
    monkeypatch: pytest.MonkeyPatch, store: Store, read: Callable[[], Any]
) -> tuple[Any, int, _Held]:
    """Run *read* in a thread; while its child is held, write 200 times.

    Returns what *read* returned, and the revision the child was forked at.
    """
    held = _Held()
    monkeypatch.setattr(_fork, "start", held)
    result: list[Any] = []
    reader = threading.Thread(target=lambda: result.append(read()))
    reader.start()
    try:
        assert held.forked.wait(30), "the whole tree was not read by a child"
        forked_at = store.revision
        for i in range(200):  # with the old design, stuck behind the copy
            store.set("x", i + 1)
        assert store.revision == forked_at + 200
    finally:
        held.release.set()
        reader.join(30)
    assert not reader.is_alive()
    (child,) = held.children
    assert_reaped(child)
    return result[0], forked_at, held


def test_get_of_a_large_tree_never_stops_the_writers(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store(_large(), backend=backend) as store:
        store.set("x", 0)
        got, _, _ = _while_held(monkeypatch, store, lambda: store.get(""))
        # Exactly the tree at the fork: none of the writes made meanwhile.
        assert _same(got, _large())
        assert store.get("x") == 200
        got["jobs"]["k0"]["n"] = -1  # a private copy
        assert store.get("jobs.k0.n") == 0


def test_get_of_a_large_part_never_stops_the_writers(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store(_large(), backend=backend) as store:
        got, _, _ = _while_held(monkeypatch, store, lambda: store.get("jobs"))
        assert _same(got, _large()["jobs"])


def _spy_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    """Record each ``_fork.start(root, dumps)`` from now on (and start it)."""
    calls: list[tuple[Any, Any]] = []
    real = _fork.start

    def spy(root: Any, dumps: Any = None) -> ForkedBody | None:
        calls.append((root, dumps))
        return real(root, dumps)

    monkeypatch.setattr(_fork, "start", spy)
    return calls


def test_a_value_is_copied_when_that_is_quicker_than_a_fork(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Store(_large()) as store:
        forks = _spy_calls(monkeypatch)
        # A fork that took a second: a copy of 12,000 values is quicker.
        monkeypatch.setattr(_fork, "copy_budget", 2_500_000)
        assert _same(store.get(""), _large())
        assert forks == []
        # A fork that took 1 ms: the same copy would stop the state longer.
        monkeypatch.setattr(_fork, "copy_budget", 2_500)
        assert _same(store.get(""), _large())
        assert len(forks) == 1
        # That fork's own pause, measured, sets the next budget.
        assert 0 < _fork.last_pause < 1.0
        budget = int(_fork.last_pause / _fork.COPY_SECONDS)
        assert _fork.copy_budget == max(_fork.COPY_AT_LEAST, budget)


def test_save_of_a_large_tree_never_stops_the_writers(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    with Store(_large(), state_file=path, backend=backend) as store:
        _while_held(monkeypatch, store, store.save)
        assert _same(json.loads(path.read_bytes()), _large())
        monkeypatch.undo()
    # At the close, the newer tree (the writes made during the save).
    assert json.loads(path.read_bytes())["x"] == 200


def test_a_small_tree_is_copied_without_a_child(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("forked for a small tree")

    monkeypatch.setattr(_fork, "start", refuse)
    small = {"a": [1, 2, {"b": True}]}
    with Store(small, state_file=tmp_path / "s.json", backend=backend) as store:
        assert store.get("") == small
        store.save()
    assert json.loads((tmp_path / "s.json").read_bytes()) == small


def test_without_fork_the_tree_is_copied(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_fork, "start", lambda root, dumps=None: None)
    path = tmp_path / "s.json"
    with Store(_large(), state_file=path, backend=backend) as store:
        assert _same(store.get(""), _large())
        store.save()
        assert _same(json.loads(path.read_bytes()), _large())


@pytest.mark.parametrize("what", ["get", "save"])
def test_a_failed_child_falls_back_to_a_copy(
    what: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real = _fork.start
    forks: list[Any] = []

    def failing(root: Any, dumps: Any = None) -> ForkedBody | None:
        # A child that dies before it writes anything.
        forks.append(root)
        return real(root, lambda value: os._exit(3))

    monkeypatch.setattr(_fork, "start", failing)
    path = tmp_path / "s.json"
    with Store(_large(), state_file=path) as store, caplog.at_level(logging.WARNING):
        if what == "get":
            assert _same(store.get(""), _large())
        else:
            store.save()
            assert _same(json.loads(path.read_bytes()), _large())
        assert "failed (status" in caplog.text
        assert "copied from now on" in caplog.text
        # A process whose children fail (or hang: each would cost a timeout)
        # copies from now on.
        assert _same(store.get("jobs"), _large()["jobs"])
        store.save()
    assert len(forks) == 1


def test_a_hung_child_is_killed_and_the_value_copied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import signal

    real = _fork.start
    hung: list[ForkedBody] = []

    def hanging(root: Any, dumps: Any = None) -> ForkedBody | None:
        child = real(root, lambda value: signal.pause())  # only SIGKILL ends it
        assert child is not None
        hung.append(child)
        return child

    monkeypatch.setattr(_fork, "start", hanging)
    monkeypatch.setattr(_large_reads, "READ_TIMEOUT", 0.2)
    with Store(_large()) as store:
        assert _same(store.get(""), _large())
    (child,) = hung
    assert_reaped(child)


def test_a_serializer_of_the_users_is_never_run_in_a_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It might take a lock that another thread held at the fork.
    class Mine:
        def dumps(self, value: Any) -> bytes:
            return json.dumps(value).encode()

        def loads(self, data: bytes) -> object:
            return json.loads(data)

    def refuse(root: Any, dumps: Any = None) -> None:
        assert dumps is not Mine.dumps, "the user's serializer ran in a child"
        raise AssertionError("forked to save with the user's serializer")

    path = tmp_path / "s.json"
    with Store(_large(), state_file=path, serializer=Mine()) as store:
        monkeypatch.setattr(_fork, "start", refuse)
        store.save()
        monkeypatch.undo()
    assert _same(json.loads(path.read_bytes()), _large())


def test_the_built_in_serializers_run_in_the_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.json"
    serializer = JsonSerializer(indent=None)
    with Store(_large(), state_file=path, serializer=serializer) as store:
        forks = _spy_calls(monkeypatch)
        store.save()
        monkeypatch.undo()
    assert [dumps for _, dumps in forks] == [serializer.dumps]
    assert path.read_bytes() == serializer.dumps(_large())


def test_get_of_a_large_persisted_tree(backend: str, tmp_path: Path) -> None:
    with Store(_large(), state_dir=tmp_path / "d", backend=backend) as store:
        store.set("x", 5)
        whole = store.get("")
        assert whole["x"] == 5
        assert whole["jobs"] == _large()["jobs"]


# -- the async handle -------------------------------------------------------------


async def _async_while_held(
    monkeypatch: pytest.MonkeyPatch, state: Any, read: Callable[[], Awaitable[Any]]
) -> Any:
    """Run *read()* in a task; while its child is held, send 100 times."""
    held = _Held()
    monkeypatch.setattr(_fork, "start", held)
    got: list[Any] = []

    async def run() -> None:
        got.append(await read())

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        assert await anyio.to_thread.run_sync(held.forked.wait, 30)
        for i in range(100):  # with a copy on the loop, after it
            await state.send(Set("y", i))
        assert not got  # still held: the sends did not wait for it
        held.release.set()
    (child,) = held.children
    assert_reaped(child)
    return got[0]


@pytest.mark.anyio
async def test_an_async_get_of_a_large_value_never_stops_the_actor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with anyio.fail_after(60):
        async with open_state(_large()) as state:
            got = await _async_while_held(monkeypatch, state, lambda: state.get(""))
            assert await state.get("y") == 99
    assert _same(got, _large())  # the tree at the fork, exactly


@pytest.mark.anyio
async def test_an_async_get_falls_back_to_a_copy_when_the_child_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = _fork.start
    monkeypatch.setattr(
        _fork, "start", lambda root, dumps=None: real(root, lambda v: os._exit(3))
    )
    async with open_state(_large()) as state:
        assert _same(await state.get("jobs"), _large()["jobs"])


@pytest.mark.anyio
async def test_an_async_get_of_a_large_persisted_value(tmp_path: Path) -> None:
    async with open_state(_large(), state_dir=tmp_path / "d") as state:
        await state.send(Set("x", 7))
        whole = await state.get("")
        assert whole["x"] == 7
        assert _same(whole["jobs"], _large()["jobs"])


@pytest.mark.anyio
async def test_a_cancelled_async_get_leaves_no_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held = _Held()
    monkeypatch.setattr(_fork, "start", held)
    with anyio.fail_after(60):
        async with open_state(_large()) as state:
            async with anyio.create_task_group() as tg:
                tg.start_soon(state.get, "")
                assert await anyio.to_thread.run_sync(held.forked.wait, 30)
                tg.cancel_scope.cancel()
            # Cancelled before its worker thread began to read, the child was
            # killed and reaped at once; after, that read goes on once
            # released, and reaps it there.
            held.release.set()
            if held.read_began.is_set():
                assert await anyio.to_thread.run_sync(held.read_done.wait, 30)
            assert await state.get("x") == 0
    (child,) = held.children
    assert_reaped(child)


@pytest.mark.anyio
async def test_at_revision_of_a_large_tree_never_stops_the_actor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with anyio.fail_after(60):
        async with open_state(_large()) as state:
            for i in range(3):
                await state.send(Set("x", i + 1))  # revisions 1, 2, 3
            wanted = state.revision - 1  # x == 2 there
            got = await _async_while_held(
                monkeypatch, state, lambda: state.at_revision(wanted)
            )
    expected = _large()
    expected["x"] = 2
    assert _same(got, expected)


# -- the garbage collector ------------------------------------------------------


def test_a_rebuild_freezes_as_it_goes_and_once_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_large_reads, "FREEZE_FRAMES", 4)
    tree = _large(10 * FRAME_VALUES)
    fed = 0
    frozen_after: list[int] = []
    rebuild = Rebuild(lambda: frozen_after.append(fed))
    frames = rebuild.frames(encode_frames(tree))
    for frame in frames:
        fed += 1
        rebuild.feed(frame)
    # Every 4 frames counted back from the last, and after the last.
    n = len(frames)
    assert n > 8
    assert frozen_after == [i for i in range(1, n + 1) if (n - i) % 4 == 0]
    assert _same(rebuild.root, tree)


def _scanned(value: object) -> bool:
    """Whether full collections go through *value* (it is not frozen)."""
    import gc

    assert gc.is_tracked(value)
    return id(value) in {id(o) for o in gc.get_objects()}


@pytest.mark.anyio
@pytest.mark.parametrize("freezes", [True, False])
@pytest.mark.parametrize("way", ["get", "at_revision"])
async def test_a_large_value_read_is_frozen_by_a_state_that_freezes(
    freezes: bool, way: str
) -> None:
    # A full collection would go through each of its million members (the
    # large dict is tracked), while it is rebuilt and after: frozen, never.
    async with open_state(_large(), freeze_gc=freezes) as state:
        if way == "get":
            whole = await state.get("")
        else:
            whole = await state.at_revision(state.revision)
        assert _scanned(whole["jobs"]) is not freezes
    assert _same(whole, _large())


@pytest.mark.parametrize("freezes", [True, False])
def test_a_large_value_a_store_reads_is_frozen_if_it_freezes(
    backend: str, freezes: bool
) -> None:
    with Store(_large(), backend=backend, freeze_gc=freezes) as store:
        whole = store.get("")
        assert _scanned(whole["jobs"]) is not freezes
    assert _same(whole, _large())
