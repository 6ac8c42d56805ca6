"""Random actions through the public constructors into a persisted state.

Every input must be refused where the action is built (a typed error), or
be applied or rejected by the state; none may break the state, and what it
acknowledged is what a reopening reads back. (An action whose id held a
lone surrogate passed its constructor and crashed the state's actor on
its journal record.)
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import pytest
from fuzzlib import random_json

from stateward import (
    Action,
    ActionRejectedError,
    Delete,
    Merge,
    Ping,
    Set,
    StatewardError,
    Transaction,
    open_state,
)

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

SEED = 20261207
ACTIONS = 1_500
_SEGMENTS = ["a", "b", "0", "1", "x.y", "", "*", "\ud800", "é", "a/b"]


def _path(rng: random.Random) -> Any:
    choice = rng.randrange(6)
    if choice == 0:
        return random_json(rng, 6)
    if choice == 1:
        return tuple(random_json(rng, 6) for _ in range(rng.randrange(3)))
    segments = [rng.choice(_SEGMENTS) for _ in range(rng.randrange(1, 4))]
    return rng.choice([".".join(segments), "/" + "/".join(segments), tuple(segments)])


def _action(rng: random.Random, depth: int = 0) -> Action:
    options: dict[str, Any] = {}
    for key, chance in (("source", 0.3), ("payload", 0.3), ("id", 0.2)):
        if rng.random() < chance:
            options[key] = random_json(rng, 5)
    kind = rng.randrange(5 if depth < 2 else 4)
    if kind == 0:
        return Set(_path(rng), random_json(rng), **options)
    if kind == 1:
        missing_ok = rng.choice([True, False, None, 1])
        return Delete(_path(rng), missing_ok=missing_ok, **options)
    if kind == 2:
        return Merge(_path(rng), random_json(rng, rng.choice([5, 6])), **options)
    if kind == 3:
        return Ping(_path(rng), **options)
    inner = [_action(rng, depth + 1) for _ in range(rng.randrange(3))]
    if_revision = rng.choice([None, 0, 1, -1, "x"])
    return Transaction(inner, if_revision=if_revision, **options)


async def test_no_action_built_from_random_input_breaks_a_persisted_state(
    tmp_path: Path,
) -> None:
    rng = random.Random(SEED)
    counts = {"refused": 0, "applied": 0, "rejected": 0}
    async with open_state({}, state_dir=tmp_path, durability="none") as state:
        for _ in range(ACTIONS):
            try:
                action = _action(rng)
            except StatewardError:
                counts["refused"] += 1
                continue
            try:
                await state.send(action)
            except ActionRejectedError:
                counts["rejected"] += 1
            else:
                counts["applied"] += 1
        tree, revision = await state.get(""), state.revision
    async with open_state({}, state_dir=tmp_path) as state:
        assert (await state.get(""), state.revision) == (tree, revision)
    print(f"{ACTIONS} random actions: {counts}")
    assert counts["applied"] > 50
    assert counts["rejected"] > 50
