"""Checkpoints: registered objects and the tree in one timestamped directory."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from typing import TYPE_CHECKING

import anyio
import pytest
import trio
import trio.lowlevel
import trio.testing

from stateward import (
    RAS,
    CheckpointError,
    Checkpoints,
    DuplicateNameError,
    InvalidActionError,
    KeepNewest,
    SaveEvery,
    Set,
    open_state,
)

from .forks import assert_reaped, holding, spy_forks
from .frozenclock import settle

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


class Counter:
    """A stand-in for a model: its state is one number, saved as a file."""

    def __init__(self, value: int = 0) -> None:
        self.value = value
        self.fail = False

    def save_state(self, path: Path) -> None:
        if self.fail:
            raise RuntimeError("disk of the model is gone")
        path.write_text(str(self.value))

    def load_state(self, path: Path) -> None:
        self.value = int(path.read_text())


class Buffer:
    """An object that saves itself as a directory of files."""

    def __init__(self, items: list[str] | None = None) -> None:
        self.items = items or []

    def save_state(self, path: Path) -> None:
        path.mkdir()
        for i, item in enumerate(self.items):
            (path / f"{i}.txt").write_text(item)

    def load_state(self, path: Path) -> None:
        names = sorted(path.iterdir(), key=lambda p: int(p.stem))
        self.items = [p.read_text() for p in names]


async def test_save_then_load_restores_tree_and_objects(tmp_path: Path) -> None:
    model, buffer = Counter(7), Buffer(["a", "b"])
    async with open_state({"job": {"sorted": 3}}) as state:
        cp = Checkpoints(state, tmp_path / "cp")
        cp.register("model", model)
        cp.register("buffer", buffer)
        info = await cp.save()
        assert info.revision == 0
        assert info.objects == ("model", "buffer")
        assert info.path.parent == tmp_path / "cp"
        assert [i.path for i in cp.list()] == [info.path]
        manifest = json.loads((info.path / "MANIFEST.json").read_text())
        assert manifest["revision"] == 0
        assert json.loads((info.path / "state.json").read_text()) == {
            "job": {"sorted": 3}
        }

        await state.send(Set("job.sorted", 99))
        model.value, buffer.items = 0, []
        seen: list[object] = []
        await state.subscribe("job.sorted", lambda e: seen.append(e.new_value) or 1)
        loaded = await cp.load()
        assert loaded == info
        assert await state.get("job.sorted") == 3
        assert model.value == 7
        assert buffer.items == ["a", "b"]
    # One action set the whole tree: subscribers below it hear of it once.
    assert seen == [{"job": {"sorted": 3}}]


async def test_checkpoint_of_a_persisted_state_holds_only_durable_revisions(
    tmp_path: Path,
) -> None:
    async with open_state({}, state_dir=tmp_path / "s", durability="none") as state:
        for n in range(20):
            await state.send(Set("n", n))
        info = await Checkpoints(state, tmp_path / "cp").save()
        assert info.revision == 20
        assert state.statistics().durable_revision is not None
        assert state.statistics().durable_revision >= 20
    loaded = json.loads((info.path / "state.json").read_text())
    assert loaded == {"n": 19}


async def test_wait_durable_on_a_plain_state_returns_at_once() -> None:
    async with open_state({}) as state:
        await state.send(Set("a", 1))
        assert await state.wait_durable() == 1


async def test_duplicate_and_unsafe_names_are_refused(tmp_path: Path) -> None:
    async with open_state({}) as state:
        cp = Checkpoints(state, tmp_path / "cp")
        cp.register("model", Counter())
        with pytest.raises(DuplicateNameError, match="checkpointed object"):
            cp.register("model", Counter())
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "x\0y", "é", "a" * 129]:
            with pytest.raises(InvalidActionError):
                cp.register(bad, Counter())
            with pytest.raises(InvalidActionError):
                await cp.save(name=bad)
        with pytest.raises(InvalidActionError, match="save_state"):
            cp.register("plain", object())  # type: ignore[arg-type]
        with pytest.raises(InvalidActionError):
            Checkpoints(state, tmp_path, keep=0)
        for missing in ["nope", ["model"], {}, None, 1]:
            with pytest.raises(KeyError):
                cp.unregister(missing)  # type: ignore[arg-type]
        cp.unregister("model")
        assert cp.names == ()
    # nothing created by refusals: only the (empty) directory, made up front
    assert sorted(os.listdir(tmp_path)) == ["cp"]
    assert os.listdir(tmp_path / "cp") == []


async def test_an_existing_checkpoint_is_never_overwritten(tmp_path: Path) -> None:
    model = Counter(1)
    async with open_state({"v": 1}) as state:
        cp = Checkpoints(state, tmp_path)
        cp.register("model", model)
        first = await cp.save(name="nightly")
        model.value = 2
        await state.send(Set("v", 2))
        with pytest.raises(FileExistsError):
            await cp.save(name="nightly")
    assert (first.path / "objects" / "model").read_text() == "1"
    assert json.loads((first.path / "state.json").read_text()) == {"v": 1}
    assert _listing(tmp_path) == ["nightly"]  # no partial left


async def test_load_of_a_missing_checkpoint_raises_file_not_found(
    tmp_path: Path,
) -> None:
    async with open_state({}) as state:
        cp = Checkpoints(state, tmp_path / "never-made")
        with pytest.raises(FileNotFoundError):
            await cp.load()
        with pytest.raises(FileNotFoundError):
            await cp.load("nope")
        with pytest.raises(FileNotFoundError):
            await cp.load(tmp_path / "nope")


async def test_load_checks_everything_before_changing_anything(tmp_path: Path) -> None:
    async with open_state({"v": 1}) as state:
        old = Checkpoints(state, tmp_path)
        old.register("model", Counter(5))
        info = await old.save()
        await state.send(Set("v", 2))

        cp = Checkpoints(state, tmp_path)
        model, extra = Counter(9), Counter(8)
        cp.register("model", model)
        cp.register("extra", extra)  # not in the checkpoint
        with pytest.raises(CheckpointError, match="extra"):
            await cp.load(info.path)
        assert (model.value, extra.value) == (9, 8)
        assert await state.get("v") == 2

        (info.path / "state.json").write_text("{not json")
        cp.unregister("extra")
        with pytest.raises(CheckpointError, match=r"state\.json"):
            await cp.load(info.path.name)
        (info.path / "state.json").write_text('{"v": NaN}')
        with pytest.raises(CheckpointError, match=r"state\.json"):
            await cp.load(info.path.name)
        # Valid JSON, not a valid tree: refused, naming where.
        (info.path / "state.json").write_text('{"v": [1, 18446744073709551616]}')
        with pytest.raises(CheckpointError, match=r"state\.json\['v'\]\[1\]"):
            await cp.load(info.path.name)
        (info.path / "MANIFEST.json").write_text("[]")
        with pytest.raises(CheckpointError, match="manifest"):
            await cp.load(info.path.name)
        assert cp.list() == []  # a damaged checkpoint is not listed
        assert model.value == 9
        assert await state.get("v") == 2


async def test_failing_save_state_leaves_no_checkpoint(tmp_path: Path) -> None:
    model = Counter()
    async with open_state({}) as state:
        cp = Checkpoints(state, tmp_path)
        cp.register("ok", Counter())
        cp.register("model", model)
        model.fail = True
        with pytest.raises(CheckpointError, match="disk of the model is gone"):
            await cp.save()
        assert _listing(tmp_path) == []


def _listing(directory: Path) -> list[str]:
    """The directory's entries but its own dot files (``.lock``, ``.sequence``)."""
    return sorted(n for n in os.listdir(directory) if n not in (".lock", ".sequence"))


class _WritesNothing:
    def save_state(self, path: Path) -> None:
        pass

    def load_state(self, path: Path) -> None:
        pass


async def test_retention_keeps_the_newest(tmp_path: Path) -> None:
    async with open_state({}) as state:
        cp = Checkpoints(state, tmp_path, keep=2)
        saved = []
        for n in range(5):
            await state.send(Set("n", n))
            saved.append(await cp.save(name=f"c{n}"))
        assert [i.path for i in cp.list()] == [saved[3].path, saved[4].path]
        assert _listing(tmp_path) == ["c3", "c4"]


async def test_leftovers_of_a_crash_are_removed_and_never_listed(
    tmp_path: Path,
) -> None:
    (tmp_path / ".partial-x").mkdir()
    (tmp_path / ".partial-x" / "state.json").write_text("{}")
    (tmp_path / ".deleting-y").mkdir()
    (tmp_path / "not-a-checkpoint").mkdir()
    async with open_state({}) as state:
        cp = Checkpoints(state, tmp_path)
        assert cp.list() == []
        info = await cp.save()
    assert _listing(tmp_path) == sorted([info.path.name, "not-a-checkpoint"])


async def test_checkpoint_files_are_private(tmp_path: Path) -> None:
    async with open_state({}) as state:
        info = await Checkpoints(state, tmp_path / "cp").save()
    assert stat.S_IMODE(os.stat(tmp_path / "cp").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(info.path).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(info.path / "state.json").st_mode) == 0o600


@pytest.mark.parametrize(
    "anyio_backend", [("trio", {"clock": trio.testing.MockClock()})]
)
async def test_run_saves_every_interval_and_survives_a_failure(
    tmp_path: Path,
) -> None:
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, trio.testing.MockClock)
    model = Counter()
    async with open_state({}) as state, anyio.create_task_group() as tg:
        cp = Checkpoints(state, tmp_path, keep=10)
        cp.register("model", model)
        await tg.start(cp.run, 10)
        with pytest.raises(InvalidActionError):
            await cp.run(0)
        for n in range(1, 4):
            clock.jump(9.9)
            await trio.testing.wait_all_tasks_blocked()
            assert cp.saved == n - 1  # not before its time
            clock.jump(0.1)
            await settle()
            assert cp.saved == n
        model.fail = True
        clock.jump(10)
        await settle()
        assert cp.failed == 1
        assert isinstance(cp.last_error, CheckpointError)
        model.fail = False
        clock.jump(10)
        await settle()
        assert cp.saved == 4  # the loop went on
        tg.cancel_scope.cancel()
    assert len(cp.list()) == 4


async def test_subscribers_ack_a_loaded_tree(tmp_path: Path) -> None:
    async with open_state({"a": 1}) as state:
        cp = Checkpoints(state, tmp_path)
        info = await cp.save()
        await state.send(Set("a", 2))
        await state.subscribe("a", lambda e: RAS.SUCCESS, name="ui")
        assert (await cp.load(info.path)).revision == 0
        assert await state.get() == {"a": 1}


class _Stateless:
    """pamiq-core's default: save_state writes nothing, load_state gets a path."""

    def __init__(self) -> None:
        self.loaded_from: list[Path] = []

    def save_state(self, path: Path) -> None:
        pass

    def load_state(self, path: Path) -> None:
        self.loaded_from.append(path)


async def test_a_stateless_object_is_saved_and_loaded(tmp_path: Path) -> None:
    stateless = _Stateless()
    async with open_state({"a": 1}) as state:
        cp = Checkpoints(state, tmp_path)
        cp.register("stateless", stateless)
        cp.register("model", Counter(5))
        info = await cp.save()
        assert info.empty == ("stateless",)
        loaded = await cp.load()
        assert loaded.empty == ("stateless",)
    assert stateless.loaded_from == [info.path / "objects" / "stateless"]
    assert not stateless.loaded_from[0].exists()  # documented: no such path


async def test_10_checkpoints_order_by_sequence_not_by_the_clock(
    tmp_path: Path,
) -> None:
    async with open_state({}) as state:
        cp = Checkpoints(state, tmp_path, keep=1)
        await state.send(Set("n", 1))
        first = await cp.save(name="first")
        # a checkpoint dated in the future (a clock stepped back, a copy)
        manifest = first.path / "MANIFEST.json"
        data = json.loads(manifest.read_text())
        data["created"] = "2999-01-01T00:00:00+00:00"
        manifest.write_text(json.dumps(data))
        await state.send(Set("n", 2))
        second = await cp.save(name="second")
        assert second.sequence == first.sequence + 1
        assert [i.path.name for i in cp.list()] == ["second"]  # the old one went
        await state.send(Set("n", 3))
        await cp.load()
        assert await state.get("n") == 2  # the newest, not the future-dated one


async def test_10_a_failing_load_state_names_what_was_restored(tmp_path: Path) -> None:
    class Breaks(Counter):
        def load_state(self, path: Path) -> None:
            raise OSError("unreadable")

    async with open_state({"n": 1}) as state:
        cp = Checkpoints(state, tmp_path)
        first, broken = Counter(1), Breaks(2)
        cp.register("first", first)
        cp.register("broken", broken)
        await cp.save()
        first.value = 10
        await state.send(Set("n", 2))
        with pytest.raises(CheckpointError, match="restored before it") as info:
            await cp.load()
        assert info.value.restored == ("first",)
        assert await state.get("n") == 2  # the tree was not changed


_SAVER = """
import sys, anyio
from stateward import Checkpoints, Set, open_state
async def main():
    async with open_state({}) as state:
        cp = Checkpoints(state, sys.argv[1], keep=3)
        for i in range(int(sys.argv[2])):
            await state.send(Set("i", i))
            await cp.save(name=f"{sys.argv[3]}-{i}")
anyio.run(main)
"""


def test_10_two_processes_saving_into_one_directory_both_succeed(
    tmp_path: Path,
) -> None:
    saves = 20
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SAVER, str(tmp_path), str(saves), tag],
            stderr=subprocess.PIPE,
        )
        for tag in ("p", "q")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    names = _listing(tmp_path)
    assert len(names) == 3  # keep=3, and nothing half-written left
    print(f"2 processes x {saves} saves: 0 failed; kept {names}")


async def test_a_retention_policy_of_your_own_runs_after_save_and_on_demand(
    tmp_path: Path,
) -> None:
    def keep_even(checkpoints):
        return [c for c in checkpoints if c.sequence % 2]  # remove the odd ones

    async with open_state({}) as state:
        cp = Checkpoints(state, tmp_path, retention=keep_even)
        for n in range(4):
            await cp.save(name=f"c{n}")
        assert [i.sequence for i in cp.list()] == [2, 4]  # never reused
        removed = await cp.retain(KeepNewest(1))
        assert [i.path.name for i in removed] == ["c1"]
        assert [i.path.name for i in cp.list()] == ["c3"]
        with pytest.raises(InvalidActionError, match="not both"):
            Checkpoints(state, tmp_path, keep=1, retention=keep_even)
    plain = Checkpoints(state, tmp_path / "none")
    assert (tmp_path / "none").is_dir()  # made when built: users check for it
    assert await plain.retain() == []  # no policy: removes nothing


def test_save_every_seconds_or_steps_with_a_fake_clock() -> None:
    now = [0.0]
    by_time = SaveEvery(seconds=10, clock=lambda: now[0])
    assert by_time() is False
    now[0] = 9.9
    assert by_time() is False
    now[0] = 10.0
    assert by_time() is True
    assert by_time() is False  # starts over
    by_steps = SaveEvery(steps=3, immediately=True)
    assert [by_steps() for _ in range(7)] == [
        True,
        False,
        False,
        True,
        False,
        False,
        True,
    ]
    with pytest.raises(InvalidActionError):
        SaveEvery()
    with pytest.raises(InvalidActionError):
        SaveEvery(seconds=0)


async def test_a_cancelled_save_leaves_no_child_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The save is cancelled while it waits for a worker thread (the
    # application holds them all): the forked child that serialises the tree
    # (more than a pipe holds) is killed and reaped, not left blocked.
    from stateward.actors.persistence import _fork

    children = spy_forks(monkeypatch, _fork, "start")
    monkeypatch.setattr(_fork, "copy_budget", _fork.COPY_AT_LEAST)  # a fork is cheap
    big = {f"k{i}": "x" * 100 for i in range(2_000)}
    async with open_state(big) as state:
        checkpoints = Checkpoints(state, tmp_path / "checkpoints")
        async with (
            holding(anyio.to_thread.current_default_thread_limiter()),
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(checkpoints.save)
            await anyio.wait_all_tasks_blocked()  # it waits for a thread
            tg.cancel_scope.cancel()
    (child,) = children
    assert_reaped(child)


async def test_a_save_whose_child_hangs_fails_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A child that never finishes (as one deadlocked at the fork would) is
    # killed after CHILD_TIMEOUT: the save raises CheckpointError instead of
    # waiting forever, no checkpoint is left half-written, the next works.
    import signal

    from stateward.actors.persistence import _fork

    real = _fork.start

    def hanging(root: object, dumps: object) -> object:
        return real(root, lambda value: signal.pause())  # only SIGKILL ends it

    monkeypatch.setattr(_fork, "CHILD_TIMEOUT", 0.2)
    big = {f"k{i}": i for i in range(3_000)}  # more than is always copied
    async with open_state(big) as state:
        checkpoints = Checkpoints(state, tmp_path / "checkpoints")
        with monkeypatch.context() as patch:
            patch.setattr(_fork, "copy_budget", _fork.COPY_AT_LEAST)  # a fork is cheap
            patch.setattr(_fork, "start", hanging)
            children = spy_forks(patch, _fork, "start")
            with anyio.fail_after(20), pytest.raises(CheckpointError, match="killed"):
                await checkpoints.save(name="hung")
        (child,) = children
        assert_reaped(child)
        assert checkpoints.list() == []
        info = await checkpoints.save(name="after")
        assert [c.path for c in checkpoints.list()] == [info.path]
        assert info.path.name == "after"


async def test_a_small_tree_is_checkpointed_without_a_fork(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fork stops the process for a time that grows with its memory: a tree
    # whose copy is quicker than the latest fork is copied instead.
    from stateward.actors.persistence import _fork

    def refuse(*args: object) -> None:
        raise AssertionError("forked for a small tree")

    monkeypatch.setattr(_fork, "start", refuse)
    async with open_state({"k": [1, 2, {"x": None}]}) as state:
        checkpoints = Checkpoints(state, tmp_path / "checkpoints")
        info = await checkpoints.save(name="small")
        await state.send(Set("k", 0))
        await checkpoints.load(info.path)
        assert await state.get("") == {"k": [1, 2, {"x": None}]}


async def test_a_tree_larger_than_one_action_is_loaded_whole(tmp_path: Path) -> None:
    # The size limit of one action guards what is sent; a checkpoint's tree
    # is what the state held, and loads whole, as it was saved.
    from stateward import InvalidValueError, set_limits

    previous = set_limits(max_action_bytes=4096)
    try:
        tree = {"jobs": {f"k{i}": {"n": i} for i in range(1_000)}}  # about 25 kB
        with pytest.raises(InvalidValueError):
            Set("", tree)
        async with open_state(tree) as state:
            cp = Checkpoints(state, tmp_path)
            model = Counter(5)
            cp.register("model", model)
            info = await cp.save()
            await state.send(Set("jobs.k1.n", -1))
            model.value = 6
            await cp.load(info.path)
            assert await state.get("") == tree
            assert model.value == 5
        with pytest.raises(InvalidValueError):  # every other action: limited
            Set("", tree)
    finally:
        set_limits(max_action_bytes=previous.max_action_bytes)


async def test_a_directory_or_path_that_is_no_path_is_a_typed_error(
    tmp_path: Path,
) -> None:
    # (a TypeError or UnicodeEncodeError from os and the filesystem before)
    async with open_state({"a": 1}) as state:
        for bad in (None, -1, "x\ud800", ""):
            with pytest.raises(InvalidActionError, match="directory"):
                Checkpoints(state, bad)  # type: ignore[arg-type]
        checkpoints = Checkpoints(state, tmp_path)
        for bad in (-1, "x\ud800"):
            with pytest.raises(InvalidActionError, match="path"):
                await checkpoints.load(bad)  # type: ignore[arg-type]


class _Unspeakable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str")

    __repr__ = __str__


@pytest.mark.parametrize("exc", [GeneratorExit(), BaseException(), _Unspeakable()])
async def test_whatever_save_state_or_load_state_raise_is_a_checkpoint_error(
    tmp_path: Path, exc: BaseException
) -> None:
    # A GeneratorExit or bare BaseException went past "except Exception"
    # (and out of a periodic run(), which counts CheckpointErrors: the
    # caller's task group died); an exception whose repr raises made the
    # report itself raise.
    class Raises(Counter):
        saving = True

        def save_state(self, path: Path) -> None:
            if self.saving:
                raise exc
            super().save_state(path)

        def load_state(self, path: Path) -> None:
            raise exc

    name = type(exc).__name__
    async with open_state({"n": 1}) as state:
        cp = Checkpoints(state, tmp_path)
        obj = Raises(3)
        cp.register("obj", obj)
        with pytest.raises(CheckpointError, match=f"save_state of 'obj' raised {name}"):
            await cp.save()
        assert _listing(tmp_path) == []
        obj.saving = False
        await cp.save()
        with pytest.raises(CheckpointError, match=f"load_state of 'obj' raised {name}"):
            await cp.load()
        assert await state.get("n") == 1


async def test_an_object_with_no_save_state_is_named_by_its_type(
    tmp_path: Path,
) -> None:
    async with open_state({}) as state:
        cp = Checkpoints(state, tmp_path)
        with pytest.raises(InvalidActionError, match="got a _Unspeakable"):
            cp.register("x", _Unspeakable())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("policy", "why"),
    [
        (lambda infos: 1 / 0, "policy raised ZeroDivisionError"),
        (lambda infos: [1], "not a int"),
        (lambda infos: None, "policy raised TypeError"),
    ],
)
async def test_a_retention_policy_that_fails_is_a_checkpoint_error(
    tmp_path: Path, policy, why: str
) -> None:
    async with open_state({}) as state:
        cp = Checkpoints(state, tmp_path, retention=policy)
        with pytest.raises(CheckpointError, match=why):
            await cp.save(name="c0")
        assert [i.path.name for i in cp.list()] == ["c0"]  # saved, complete
        with pytest.raises(CheckpointError, match=why):
            await cp.retain()
        assert [i.path.name for i in cp.list()] == ["c0"]
