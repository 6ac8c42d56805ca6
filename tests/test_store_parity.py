"""The Store has what the async handle has: derive, track, watch, checkpoints."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING

import pytest

from stateward import CompactedError, Resync, StateChanged, Store

if TYPE_CHECKING:
    from pathlib import Path


def _threads(target, n):
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
        assert not t.is_alive()


def test_a_derived_value_stays_in_step_with_writes_from_eight_threads(backend):
    with Store({"items": {}}, backend=backend) as store:
        store.derive("total", "items", lambda items: sum((items or {}).values()))
        seen = []
        store.subscribe(lambda e: seen.append(e), "total")

        def writer(i: int) -> None:
            for j in range(25):
                store.set(f"items.t{i}-{j}", 1)

        _threads(writer, 8)
        assert store.get("total") == 200
        assert not store.set("total", 5)  # written only by its derivation
        assert store.get("total") == 200
        store.underive("total")
        assert store.set("total", 5)


def test_watch_from_a_revision_sees_every_write_of_four_threads_once(backend):
    with Store({"jobs": {}}, backend=backend) as store:
        store.set("jobs.before", 0)
        start = store.revision
        got: list[StateChanged | Resync] = []
        ready = threading.Event()

        def watcher() -> None:
            feed = store.watch("jobs.**", from_revision=0, mailbox_size=1000)
            ready.set()
            for event in feed:
                got.append(event)
                if len(got) == 1 + 100:
                    break

        reader = threading.Thread(target=watcher)
        reader.start()
        ready.wait(10)

        def writer(i: int) -> None:
            for j in range(25):
                store.set(f"jobs.w{i}.n{j}", j)

        _threads(writer, 4)
        reader.join(30)
        assert not reader.is_alive()
        assert all(isinstance(e, StateChanged) for e in got)
        revisions = [e.revision for e in got]
        assert revisions == list(range(start, start + 101))  # in order, no gap
        assert store.get("jobs.w3.n24") == 24
        # Leaving the loop unsubscribed: only the Store's own names remain.
        assert not [n for n in store._state.subscriber_statistics() if "watch" in n]


def test_watch_of_a_revision_too_old_is_a_compacted_error(backend):
    with Store({}, backend=backend) as store:
        for i in range(1_100):  # past the default history of 1,000
            store.set("n", i)
        with pytest.raises(CompactedError):
            next(iter(store.watch("n", from_revision=1)))


def test_a_tracked_reaction_reruns_when_what_it_read_changes(backend):
    with Store({"limit": 1, "used": 0}, backend=backend) as store:
        over = []
        saw_three = threading.Event()

        def check(reader) -> None:
            if reader.get("used") > reader.get("limit"):
                over.append(reader.get("used"))
            if reader.get("used") == 3:
                saw_three.set()

        reaction = store.track(check)
        _threads(lambda i: store.set("used", i + 1), 3)
        # Changes fold into the reaction's next run: it sees the last of the
        # three, not necessarily the others; wait for it before moving on.
        assert saw_three.wait(10)
        store.set("limit", 10)
        store.untrack(reaction)
        store.set("used", 50)  # no longer tracked
        assert over
        assert max(over) <= 3


class Model:
    def __init__(self) -> None:
        self.weights = [0.0]

    def save_state(self, path: Path) -> None:
        path.write_text(json.dumps(self.weights))

    def load_state(self, path: Path) -> None:
        self.weights = json.loads(path.read_text())


def test_checkpoints_of_a_store_save_and_restore_the_tree_and_objects(
    backend, tmp_path
):
    model = Model()
    with Store({"step": 0}, backend=backend) as store:
        checkpoints = store.checkpoints(tmp_path / "ckpt", keep=2)
        checkpoints.register("model", model)
        for step in range(1, 4):
            model.weights = [step * 0.5]
            store.set("step", step)
            checkpoints.save(name=f"step-{step}")
        assert [i.path.name for i in checkpoints.list()] == ["step-2", "step-3"]
        model.weights = [9.9]
        store.set("step", 99)

        def restore(_: int) -> None:  # from another thread
            checkpoints.load("step-2")

        _threads(restore, 1)
        assert store.get("step") == 2
        assert model.weights == [1.0]
