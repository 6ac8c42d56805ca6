"""A seeded mix of actions and the plain model the persistence tests compare to."""

from __future__ import annotations

import contextlib
import random
from typing import Any

from stateward import Action, ActionRejectedError, Delete, Merge, Set, Transaction
from stateward.tree import Tree

KEYS = [f"k{i}" for i in range(12)]


def actions(seed: int, count: int) -> list[Action]:
    """Return *count* actions (set/delete/merge/transaction, some failing midway)."""
    rng = random.Random(seed)
    out: list[Action] = []
    for n in range(count):
        roll = rng.random()
        key = rng.choice(KEYS)
        if roll < 0.5:
            out.append(Set(f"data.{key}", {"n": n, "v": rng.randrange(100)}))
        elif roll < 0.65:
            out.append(Delete(f"data.{key}"))
        elif roll < 0.8:
            out.append(Merge(f"data.{key}", {"m": n}))
        elif roll < 0.9:
            other = rng.choice(KEYS)
            out.append(
                Transaction([Set(f"data.{key}", n), Set(f"meta.{other}", [n, n + 1])])
            )
        else:
            # Fails midway (a scalar cannot hold a child): nothing may change.
            out.append(Transaction([Set(f"meta.{key}", n), Set(f"meta.{key}.x", 1)]))
    return out


def apply_all(root: Any, revision: int, todo: list[Action]) -> Tree:
    """Apply *todo* to a copy of *root* the way the state actor does."""
    tree = Tree(root, revision=revision)
    for action in todo:
        with contextlib.suppress(ActionRejectedError):
            tree.apply(action)
    return tree
