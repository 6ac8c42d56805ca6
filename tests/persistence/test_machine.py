"""P1: a Hypothesis state machine against a plain model, with restarts and crashes.

A persisted Store (journal, snapshots every 5 revisions) takes random set,
delete, merge and transaction calls (some failing midway); a *subscribe*
adds a subscriber, after which every change must be acked by it, seen before
its ack and in revision order; a *restart* closes
and reopens it, a *crash* opens a copy of the directory taken while it runs
(every call returned after its fsync, so the copy is what a crash leaves).
After every step the state equals the model. Both backends.

STATEWARD_P1_EXAMPLES and STATEWARD_P1_STEPS set the size (CI: 200 x 100, as
RELIABILITY.md asks).
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from stateward import (
    RAS,
    Action,
    ActionRejectedError,
    Delete,
    Merge,
    Resync,
    Set,
    StateChanged,
    Store,
    Transaction,
)
from stateward.tree import Tree

from .workload import apply_all

EXAMPLES = int(os.environ.get("STATEWARD_P1_EXAMPLES", "200"))
STEPS = int(os.environ.get("STATEWARD_P1_STEPS", "100"))
keys = st.sampled_from(["a", "b", "c", "a.x", "b.0", "c.y.z"])
values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["x", "y"]), inner, max_size=2)
    ),
    max_leaves=5,
)


def _machine(backend: str) -> type[RuleBasedStateMachine]:
    class PersistedStore(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.base = tempfile.mkdtemp(prefix="stateward-p1-")
            self.dirs = itertools.count()
            self.dir = os.path.join(self.base, str(next(self.dirs)))
            self.store = self._open(self.dir)
            self.model = Tree({})
            self.seen: list[int] | None = None  # revisions a subscriber acked

        def _open(self, directory: str) -> Store:
            return Store(
                state_dir=directory, snapshot_every=5, keep_snapshots=2, backend=backend
            )

        def _do(self, action: Set | Delete | Merge | Transaction) -> None:
            expected = apply_all(self.model.root, self.model.revision, [action])
            if self.seen is not None:
                ok = self._send_and_await_acks(action)
            elif isinstance(action, Set):
                ok = self.store.set(action.path, action.value)
            elif isinstance(action, Delete):
                ok = self.store.delete(action.path)
            else:  # the Store has no Merge or Transaction call: send it directly
                ok = self._send(action)
            assert ok == _accepted(action, self.model)
            self.model = expected

        def _send_and_await_acks(self, action: Action) -> bool:
            portal, state = self.store._portal, self.store._state
            try:
                receipt = portal.call(state.send, action)
            except ActionRejectedError:
                return False
            if receipt.changed:
                report = portal.call(receipt.acks, 30.0)
                assert report.ok, report
                assert self.seen is not None
                assert self.seen[-1] == receipt.revision  # seen before its ack
            return True

        def _send(self, action: Merge | Transaction) -> bool:
            try:
                self.store._portal.call(self.store._state.send, action)
            except ActionRejectedError:
                return False
            return True

        @rule(path=keys, value=values)
        def set(self, path: str, value: object) -> None:
            self._do(Set(path, value))

        @rule(path=keys)
        def delete(self, path: str) -> None:
            self._do(Delete(path, missing_ok=False))

        @rule(path=keys, value=st.dictionaries(st.sampled_from(["x", "y"]), values))
        def merge(self, path: str, value: dict[str, object]) -> None:
            self._do(Merge(path, value))

        @rule(first=keys, v1=values, second=keys, v2=values)
        def transaction(self, first: str, v1: object, second: str, v2: object) -> None:
            # May fail at its second write: then nothing at all may change.
            self._do(Transaction([Set(first, v1), Set(second, v2)]))

        @rule()
        def restart(self) -> None:
            self.store.close()
            self.store = self._open(self.dir)
            self.seen = None

        @rule()
        def subscribe(self) -> None:
            if self.seen is not None:
                return
            seen: list[int] = []

            async def handler(event: StateChanged | Resync) -> RAS:
                assert isinstance(event, StateChanged)  # blocking policy: no Resync
                seen.append(event.revision)
                return RAS.SUCCESS

            portal, state = self.store._portal, self.store._state
            portal.call(functools.partial(state.subscribe, "**", handler, name="p1"))
            self.seen = seen

        @rule()
        def crash(self) -> None:
            image = os.path.join(self.base, str(next(self.dirs)))
            _copy_running(self.dir, image)
            self.store.close()
            self.dir = image
            self.store = self._open(self.dir)
            self.seen = None

        @invariant()
        def acked_events_in_order(self) -> None:
            if self.seen is not None:
                assert self.seen == sorted(self.seen)  # a transaction: one revision

        @invariant()
        def same_as_model(self) -> None:
            assert self.store.get_state() == self.model.root
            assert self.store.revision == self.model.revision

        def teardown(self) -> None:
            self.store.close()
            shutil.rmtree(self.base, ignore_errors=True)

    return PersistedStore


def _copy_running(source: str, target: str) -> None:
    """Copy a directory in use: files only appear, grow, or go (old ones)."""
    os.mkdir(target)
    for name in os.listdir(source):
        try:
            shutil.copyfile(os.path.join(source, name), os.path.join(target, name))
        except (FileNotFoundError, IsADirectoryError):
            continue  # removed by retention (or renamed from .tmp) meanwhile


def _accepted(action: Action, model: Tree) -> bool:
    """Whether the model takes *action* (an equal write is taken, not rejected)."""
    try:
        Tree(model.root, revision=model.revision).apply(action)
    except ActionRejectedError:
        return False
    return True


@pytest.mark.timeout(900)  # 200 x 100 steps: about 75-130 s per backend here
@pytest.mark.parametrize(
    ("examples", "steps"),
    [
        pytest.param(15, 40, id="quick"),
        # P1's CI figure: in the `slow` group, which .ci/run runs too
        pytest.param(EXAMPLES, STEPS, id="full", marks=pytest.mark.slow),
    ],
)
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_persisted_store_matches_the_model_across_restarts(
    backend: str, examples: int, steps: int
) -> None:
    machine = _machine(backend)
    machine.TestCase.settings = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    machine.TestCase().runTest()
    print(f"P1 ({backend}): {examples} examples x {steps} steps, 0 failures")
