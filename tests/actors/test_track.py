"""Auto-tracked reactions: dependencies follow what each run reads."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest

from stateward import (
    DurabilityError,
    Merge,
    PersistenceConfig,
    Ping,
    Reader,
    Set,
    StateActor,
    open_state,
)
from stateward.actors._files import Files

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


async def test_a_branch_that_stops_reading_a_path_stops_depending_on_it() -> None:
    async with open_state({"flag": True, "a": 1, "b": 2}) as state:
        seen: list[Any] = []

        def view(r: Reader) -> None:
            seen.append(r.get("a") if r.get("flag") else r.get("b"))

        reaction = await state.track(view)
        assert (seen, reaction.dependencies) == ([1], ("a", "flag"))

        async def step(action: Set, expected: list[Any]) -> None:
            await state.send(action)
            await reaction.wait_idle()
            assert seen == expected

        await step(Set("b", 3), [1])  # not read: no run
        await step(Set("a", 4), [1, 4])
        await step(Set("flag", False), [1, 4, 3])
        assert reaction.dependencies == ("b", "flag")
        await step(Set("a", 5), [1, 4, 3])  # a is no longer read
        await step(Set("b", 6), [1, 4, 3, 6])
        await step(Set("", {"flag": False, "b": 6, "c": 1}), [1, 4, 3, 6])  # same b
        await step(Set("", {"flag": False, "b": 7}), [1, 4, 3, 6, 7])
        assert reaction.runs == 5
        await reaction.untrack()
        assert reaction.closed
        assert len(state._core.reactions.trie) == 0  # everything released
        await state.send(Set("b", 8))
        await reaction.wait_idle()
        assert seen == [1, 4, 3, 6, 7]


async def test_reads_below_and_above_count_as_dependencies() -> None:
    async with open_state({"job": {"a": 1, "b": 2}}) as state:
        runs: list[Any] = []
        reaction = await state.track(lambda r: runs.append(r.get("job")))
        await state.send(Set("job.a", 5))  # below the read path: its value changed
        await reaction.wait_idle()
        await state.send(Merge("job", {"c": 1}))
        await reaction.wait_idle()
        await state.send(Set("other", 1))
        await reaction.wait_idle()
        assert runs == [
            {"a": 1, "b": 2},
            {"a": 5, "b": 2},
            {"a": 5, "b": 2, "c": 1},
        ]


async def test_changes_during_an_async_run_fold_into_one_more_run() -> None:
    async with open_state({"n": 0}) as state:
        gate = anyio.Event()
        seen: list[int] = []

        async def slow(r: Reader) -> None:
            value = r.get("n")
            assert isinstance(value, int)
            if value == 1:
                await gate.wait()
            seen.append(value)

        reaction = await state.track(slow)
        await state.send(Set("n", 1))
        for _ in range(10):  # let the run with n=1 start and block on the gate
            await anyio.lowlevel.checkpoint()
        assert not reaction.idle()
        for n in range(2, 10):  # all while the run with n=1 waits
            await state.send(Set("n", n))
        gate.set()
        await reaction.wait_idle()
        assert seen == [0, 1, 9]  # the eight changes made one more run


async def test_a_reaction_that_raises_keeps_reacting() -> None:
    async with open_state({"n": 1}) as state:

        def check(r: Reader) -> None:
            if r.get("n") == 2:
                raise ValueError("two is not allowed")

        reaction = await state.track(check, name="checker")
        await state.send(Set("n", 2))
        await reaction.wait_idle()
        assert (reaction.errors, reaction.runs) == (1, 2)
        assert isinstance(reaction.last_error, ValueError)
        await state.send(Set("n", 3))
        await reaction.wait_idle()
        assert (reaction.errors, reaction.runs) == (1, 3)
        with pytest.raises(Exception, match="callable"):
            await state.track(42)  # type: ignore[arg-type]


async def test_stopping_the_state_ends_its_reactions() -> None:
    async with open_state({"n": 1}) as state:
        reaction = await state.track(lambda r: r.get("n"))
    assert reaction.closed


class _FsyncFailsLater(Files):
    def __init__(self) -> None:
        self.fail = False

    def fsync(self, fd: int) -> None:
        if self.fail:
            raise OSError(errno.EIO, "injected")
        super().fsync(fd)


async def test_a_failed_journal_stops_reactions_not_the_actor(tmp_path: Path) -> None:
    files = _FsyncFailsLater()
    config = PersistenceConfig(str(tmp_path), files=files)
    seen: list[Any] = []
    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor(persistence=config).run)
        reaction = await state.track(lambda r: seen.append(r.get("n")))
        await state.send(Set("n", 1))
        await reaction.wait_idle()
        files.fail = True
        with pytest.raises(DurabilityError):
            await state.send(Set("n", 2))
        await reaction.wait_idle()
        assert reaction.closed
        assert seen == [None, 1]  # never the write that was not made durable
        await state.stop()


async def test_a_ping_reruns_the_reactions_that_read_its_path() -> None:
    async with open_state({"a": 1, "b": 2}) as state:
        runs: list[Any] = []
        reaction = await state.track(lambda r: runs.append(r.get("a")))
        await state.send(Ping("b"))
        await reaction.wait_idle()
        await state.send(Ping("a"))
        await reaction.wait_idle()
        assert runs == [1, 1]  # notified without a change
