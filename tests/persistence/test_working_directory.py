"""A relative path names a place once, when it is given: a later ``os.chdir``
(the program's, or a library's) must not move a state's files, checkpoints
or file. Before, a state whose directory was relative wrote its next
journal segment relative to the new working directory: it failed there, or,
where a directory of that name existed, split its journal between the two.
"""

from __future__ import annotations

import os

import anyio
import pytest

from stateward import Checkpoints, InvalidActionError, Set, StateActor, Store
from stateward.actors.persistence import PersistenceConfig


def _files(directory) -> list[str]:
    return sorted(os.listdir(directory)) if directory.exists() else []


@pytest.mark.anyio
async def test_a_relative_state_dir_stays_where_it_was_given(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "st").mkdir(parents=True)  # a decoy of the same name
    monkeypatch.chdir(tmp_path / "a")
    config = PersistenceConfig("st", "fsync", snapshot_every=5, snapshot_child="fork")
    assert config.state_dir == str(tmp_path / "a" / "st")
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            state = await tg.start(StateActor(initial={}, persistence=config).run)
            await state.send(Set("k0", 0))
            os.chdir(tmp_path / "b")
            for i in range(1, 13):  # snapshots, rotations, retention
                await state.send(Set(f"k{i}", i))
            checkpoints = Checkpoints(state, "cp")  # given here: b/cp
            os.chdir(tmp_path)
            info = await checkpoints.save(name="one")
            await state.stop()
    assert _files(tmp_path / "b" / "st") == []
    assert info.path == tmp_path / "b" / "cp" / "one"
    reopened = PersistenceConfig(str(tmp_path / "a" / "st"), "fsync")
    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor(initial={}, persistence=reopened).run)
        assert await state.get("") == {f"k{i}": i for i in range(13)}
        await state.stop()


def test_a_relative_state_file_stays_where_it_was_given(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    with Store(state_file="state.json") as store:
        store.set("k", 1)
        os.chdir(tmp_path / "b")
        store.save()
    assert (tmp_path / "a" / "state.json").exists()
    assert _files(tmp_path / "b") == []
    with Store(state_file=tmp_path / "a" / "state.json") as store:
        assert store.get("k") == 1


@pytest.mark.parametrize("bad", ["", "a\0b", b"state.json"])
def test_a_state_file_that_is_no_path_is_refused(bad):
    with pytest.raises(InvalidActionError, match="state_file"):
        Store(state_file=bad)
