"""A Store transaction copies what it touches, not the whole tree.

The scratch a transaction checks its writes against is fetched a path at a
time from the state (above a small size); these tests hold it to a copy of
the whole tree: every read, every accepted and refused write, the same.
"""

from __future__ import annotations

import copy
import random
import threading
from typing import Any

import pytest

from stateward import Delete, RevisionMismatchError, Set, Store
from stateward._changes import MISSING
from stateward._errors import ActionRejectedError
from stateward.actors import _store_txn
from stateward.actors._store_txn import Scratch, fetch_at
from stateward.tree import Tree

KEYS = ["a", "b", "c", "0", "1"]


def _value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth >= 3 or roll < 0.4:
        return rng.choice([0, 1, "x", None, True, 2.5])
    if roll < 0.8:
        return {k: _value(rng, depth + 1) for k in rng.sample(KEYS, rng.randint(0, 3))}
    return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]


def _path(rng: random.Random) -> tuple[str, ...]:
    return tuple(rng.choice(KEYS) for _ in range(rng.randint(0, 4)))


def _outcome(tree: Tree, action: Any) -> object:
    try:
        tree.apply(action)
    except ActionRejectedError as exc:
        return type(exc)
    return "applied"


@pytest.mark.parametrize("seed", range(300))
def test_a_scratch_fetched_by_path_behaves_as_a_copy_of_the_whole_tree(
    seed: int,
) -> None:
    rng = random.Random(seed)
    root = _value(rng, 0) if rng.random() < 0.9 else rng.choice([[1, {"a": 2}], 3])
    live = Tree(root, revision=7)
    whole = Tree(root, revision=7)
    before = copy.deepcopy(live.root)
    fetched: list[tuple[str, ...]] = []

    def fetch(path: tuple[str, ...]) -> Any:
        fetched.append(path)
        return fetch_at(live, 7, path)

    scratch = Scratch(7, MISSING, fetch)
    for _ in range(12):
        path = _path(rng)
        roll = rng.random()
        if roll < 0.35:
            assert scratch.read(path, "default") == whole.read(path, "default")
            continue
        if roll < 0.75:
            action: Any = Set(path, _value(rng, 2))
        else:
            action = Delete(path, missing_ok=False) if path else Set(path, {})
        scratch.prepare_action(action)
        assert _outcome(scratch.tree, action) == _outcome(whole, action), action
    assert scratch.read((), None) == whole.root
    assert live.root == before  # the state itself is never touched
    assert all(len(set(fetched[: i + 1])) == i + 1 for i in range(len(fetched)))


def test_a_transaction_on_a_large_tree_copies_only_what_it_touches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    copied: list[int] = []
    real_fetch_at = _store_txn.fetch_at

    def counting(tree: Tree, revision: int, path: tuple[str, ...]) -> Any:
        depth, value = real_fetch_at(tree, revision, path)
        copied.append(len(str(value)))
        return depth, value

    monkeypatch.setattr("stateward.actors._store_txn.fetch_at", counting)
    jobs = {str(i): {"n": i, "tags": ["a", "b"]} for i in range(20_000)}
    with Store({"jobs": jobs}) as store:
        with store.transaction():
            assert store.get("jobs.5.n") == 5
            store.set("jobs.5.n", 6)
            assert store.delete("jobs.7") is True
            assert store.set("jobs.8.tags.5", "c") is False  # out of range
            assert store.get("jobs.5") == {"n": 6, "tags": ["a", "b"]}
        assert store.get("jobs.5.n") == 6
        assert store.get("jobs.7") is None
        assert len(store.get("jobs")) == 19_999
    assert 1 <= len(copied) <= 4  # a few small parts, never the tree
    assert max(copied) < 100


def test_a_read_above_the_transactions_writes_sees_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_store_txn, "WHOLE_BELOW", 0)  # fetch by path, always
    with Store({"jobs": {"1": {"n": 1}, "2": {"n": 2}}, "x": 0}) as store:
        with store.transaction():
            store.set("jobs.1.n", 10)
            store.delete("jobs.2")
            store.set("jobs.3", {"n": 3})
            assert store.get("jobs") == {"1": {"n": 10}, "3": {"n": 3}}
            assert store.get("") == {"jobs": {"1": {"n": 10}, "3": {"n": 3}}, "x": 0}
        assert store.get("") == {"jobs": {"1": {"n": 10}, "3": {"n": 3}}, "x": 0}


@pytest.mark.parametrize("touch", ["get", "set"])
def test_a_write_landing_first_makes_the_next_fetch_a_conflict(
    monkeypatch: pytest.MonkeyPatch, touch: str
) -> None:
    monkeypatch.setattr(_store_txn, "WHOLE_BELOW", 0)
    with Store({"n": 0, "other": 0}) as store:

        def read_then_touch_after_another_write() -> None:
            with store.transaction():
                assert store.get("n") == 0
                done = threading.Thread(target=store.set, args=("other", 1))
                done.start()
                done.join()
                # The state moved: never a mix of two revisions, and never a
                # write refused (False) for it.
                if touch == "get":
                    store.get("other")
                else:
                    store.set("other.deeper", 2)

        with pytest.raises(RevisionMismatchError):
            read_then_touch_after_another_write()
        assert store.get("") == {"n": 0, "other": 1}  # nothing of it applied
        assert store.update(lambda s: s.set("n", s.get("n") + 1)) is True
        assert store.get("n") == 1


def test_transactions_from_threads_fetching_by_path_lose_no_increment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_store_txn, "WHOLE_BELOW", 0)
    with Store({"counts": {str(i): 0 for i in range(4)}}) as store:

        def work(key: str) -> None:
            for _ in range(50):
                store.update(
                    lambda s: s.set(f"counts.{key}", s.get(f"counts.{key}") + 1),
                    attempts=1_000,
                )

        threads = [threading.Thread(target=work, args=(str(i % 4),)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert store.get("counts") == {str(i): 100 for i in range(4)}


def test_only_a_tree_of_at_most_whole_below_values_is_copied_whole() -> None:
    from stateward.actors._store_txn import WHOLE_BELOW, copy_small

    small = {"items": [{"n": i} for i in range((WHOLE_BELOW - 2) // 2)]}
    copied = copy_small(small)  # root + list + (dict + int) per item
    assert copied == small
    assert copied is not small
    assert copied["items"][0] is not small["items"][0]  # type: ignore[index]
    small["items"].append(0)  # one value more
    assert copy_small(small) is MISSING
    assert copy_small(list(range(10 * WHOLE_BELOW))) is MISSING
    assert copy_small(None) is None


@pytest.mark.parametrize("whole_below", [0, 2_000])
def test_a_transaction_on_a_state_whose_journal_failed_raises_its_error(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, whole_below: int
) -> None:
    from stateward import DurabilityError

    monkeypatch.setattr(_store_txn, "WHOLE_BELOW", whole_below)
    with Store({"n": 0}, state_dir=tmp_path / "state") as store:
        with store.transaction():
            assert store.get("n") == 0
        failed = DurabilityError("the journal could not be written (simulated)")
        store._state._core.failed = failed  # as a failed fsync leaves it
        with pytest.raises(DurabilityError), store.transaction():
            store.get("n")
        store._state._core.failed = None  # (so that it closes cleanly)
