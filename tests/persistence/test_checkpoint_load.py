"""Loading a checkpoint: the tree taken as decoded, the event loop left running."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import stateward.tree
from stateward import RAS, Checkpoints, Set, open_state
from stateward.actors.handle import StateHandle
from stateward.actors.persistence import _format

if TYPE_CHECKING:
    from stateward import StateChanged

pytestmark = pytest.mark.anyio

TREE: dict[str, Any] = {
    "jobs": {f"k{i}": {"n": i, "tag": "é\n\u2028"} for i in range(300)},
    "list": [1, 2.5, -0.0, True, None, {"deep": [[], {}]}],
    "big": 2**64 - 1,
    "tiny": 5e-324,
}


async def test_a_loaded_tree_is_taken_as_decoded_and_survives_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[StateChanged] = []
    copied: list[Any] = []  # what the tree copied (kept alive: ids stay unique)

    def copy_json(value: Any) -> Any:
        copied.append(value)
        return real_copy(value)

    encoded: list[Any] = []  # what the journal encoded on the loop

    def dumps_bytes(value: Any) -> bytes:
        encoded.append(value)
        return real_dumps(value)

    real_copy = stateward.tree.copy_json
    real_dumps = _format.dumps_bytes
    monkeypatch.setattr(stateward.tree, "copy_json", copy_json)
    monkeypatch.setattr(_format, "dumps_bytes", dumps_bytes)

    def heard(event: StateChanged) -> RAS:
        seen.append(event)
        return RAS.SUCCESS

    async with open_state(TREE, state_dir=tmp_path / "state") as state:
        cp = Checkpoints(state, tmp_path / "checkpoints")
        info = await cp.save()
        await state.send(Set("jobs", {}))
        await state.subscribe("", heard, name="ui")
        before = state.revision
        await cp.load(info.path)
        assert state.revision == before + 1
        core = state._core
        await (await state.send(Set("after", 1))).acks()
        # One change at the root; its value is not the tree's own object.
        event, _ = seen
        assert event.path == ""
        assert event.new_value == TREE
        # Neither copied nor encoded on the loop.
        assert not [v for v in copied if v is event.new_value]
        writes = [op for ops in encoded for op in ops if op[0] == "s"]
        assert ["s", []] in writes
        assert not [op for op in writes if op[-1] is event.new_value]
        assert core.tree.root == {**TREE, "after": 1}
        assert event.new_value is not core.tree.root
        assert core.tree._offered is None
        assert core.whole is None
    # The journal's record of the load (its value encoded in a worker
    # thread) is read back by recovery to the same tree.
    async with open_state(state_dir=tmp_path / "state") as state:
        got = await state.get("")
        assert got == {**TREE, "after": 1}
        assert math.copysign(1, got["list"][2]) == -1  # -0.0 stays -0.0


async def test_loading_an_equal_tree_still_writes_it(tmp_path: Path) -> None:
    # No comparison on the loop: a large tree's would stop it for a second.
    seen: list[StateChanged] = []
    async with open_state({"a": 1}) as state:
        cp = Checkpoints(state, tmp_path)
        info = await cp.save()
        await state.subscribe("", lambda e: seen.append(e) or RAS.SUCCESS, name="ui")
        await cp.load(info.path)
        assert state.revision == 1
        # (the subscriber has heard of the load once it acks what follows it)
        await (await state.send(Set("b", 2))).acks()
        assert [e.path for e in seen] == ["", "b"]
        assert await state.get("") == {"a": 1, "b": 2}


async def test_a_load_that_fails_to_send_leaves_no_offer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_state({"a": 1}, state_dir=tmp_path / "state") as state:
        cp = Checkpoints(state, tmp_path / "checkpoints")
        info = await cp.save()
        core = state._core
        offered: list[bool] = []

        async def refused(self: StateHandle, action: object) -> None:
            offered.append(core.tree._offered is not None and core.whole is not None)
            raise RuntimeError("refused")

        with monkeypatch.context() as patch:
            patch.setattr(StateHandle, "send", refused)
            with pytest.raises(RuntimeError, match="refused"):
                await cp.load(info.path)
        assert offered == [True]
        assert core.tree._offered is None
        assert core.whole is None
        # The next whole-tree write copies its value as usual.
        value = {"b": [2]}
        await state.send(Set("", value))
        assert core.tree.root == value
        assert core.tree.root is not value


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_loop_runs_while_a_large_checkpoint_loads(backend: str) -> None:
    # Decoding, checking and encoding run in a worker thread in short calls,
    # and the state takes the tree without copying or comparing it: another
    # task keeps running. (Before, one decode call and the copy on the loop
    # stopped it for most of the load.) Timed as a share of the load itself,
    # by the benchmark's own measure, in a process of its own: the large
    # heap it leaves would slow the forks of the tests after it.
    code = (
        "import anyio; from benchmarks._whole_reads import _checkpoint_load; "
        f"print(*anyio.run(_checkpoint_load, 200_000, backend={backend!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    took, longest = map(float, done.stdout.split())
    # Measured at 200,000 leaves: 1.3-1.7% now, 31-32% before.
    assert longest < took / 10, (longest, took)
