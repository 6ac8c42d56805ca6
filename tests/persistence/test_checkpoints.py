"""Checkpoints: registered objects and the tree in one timestamped directory."""

from __future__ import annotations

import json
import os
import stat
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
    Set,
    open_state,
)

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
        cp.unregister("model")
        assert cp.names == ()
    assert sorted(os.listdir(tmp_path)) == []  # nothing created by refusals


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
    assert os.listdir(tmp_path) == ["nightly"]  # no partial left


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
        assert os.listdir(tmp_path) == []
        cp.register("lazy", _WritesNothing())
        model.fail = False
        with pytest.raises(CheckpointError, match="wrote nothing"):
            await cp.save()
        assert os.listdir(tmp_path) == []


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
        assert sorted(os.listdir(tmp_path)) == ["c3", "c4"]


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
    assert sorted(os.listdir(tmp_path)) == sorted([info.path.name, "not-a-checkpoint"])


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
