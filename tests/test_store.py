"""The synchronous Store: plain threads, no event loop in the test."""

from __future__ import annotations

import json
import os
import threading
from typing import TYPE_CHECKING, Any

import pytest

from stateward import (
    InvalidPathError,
    InvalidValueError,
    JsonSerializer,
    PickleSerializer,
    Resync,
    Set,
    StateChanged,
    Store,
)

if TYPE_CHECKING:
    from pathlib import Path


def test_every_call_from_plain_code(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "state.json"
    with Store(state_file=path, backend=backend) as store:
        assert store.set("job.sorted", 1) is True
        assert store.get("job.missing", default=0) == 0
        assert store.set("job.sorted.deeper", 1) is False  # into a scalar
        assert store.get("job") == {"sorted": 1}
        assert store.delete("job.sorted") is True
        assert store.delete("job.sorted") is False
        state = store.get_state()
        state["job"]["x"] = 1  # a deep copy: the store does not change
        assert store.get_state() == {"job": {}}
        with pytest.raises(InvalidPathError):
            store.set("a..b", 1)
        with pytest.raises(InvalidValueError):
            store.set("a", float("nan"))
        store.set("job.bins", 12)
        assert store.save() == str(path)
        assert json.loads(path.read_text()) == {"job": {"bins": 12}}
        assert oct(os.stat(path).st_mode & 0o777) == oct(0o600)
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_subscribe_and_unsubscribe(backend: str) -> None:
    events: list[tuple[str, object]] = []
    done = threading.Event()

    def callback(event: object) -> None:
        assert isinstance(event, StateChanged)
        events.append((event.path, event.new_value))
        if event.new_value == 2:
            done.set()

    with Store({"job": {}}, backend=backend) as store:
        unsubscribe = store.subscribe(callback, "job")
        store.set("job.a", 1)
        store.set("job.a", 2)
        assert done.wait(5)
        unsubscribe()
        store.set("job.a", 3)
        unsubscribe()  # idempotent
    assert events == [("job.a", 1), ("job.a", 2)]


def test_a_callback_may_call_the_store_back() -> None:
    seen = threading.Event()
    with Store() as store:

        def mirror(event: object) -> None:
            if isinstance(event, StateChanged) and event.path == "a":
                store.set("b", event.new_value)
                seen.set()

        store.subscribe(mirror, "a")
        store.set("a", 5)
        assert seen.wait(5)
        assert store.get("b") == 5


def test_callbacks_run_in_order_and_one_that_raises_is_logged(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[int] = []

    def callback(event: object) -> None:
        assert isinstance(event, StateChanged)
        assert isinstance(event.new_value, int)
        seen.append(event.new_value)
        if event.new_value == 3:
            raise ValueError("three")

    with Store({"n": 0}, backend=backend) as store:
        store.subscribe(callback, "n")

        def writer() -> None:
            for _ in range(50):
                store.update(lambda s: s.set("n", s.get("n") + 1))

        threads = [threading.Thread(target=writer) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    # close() let the callback finish every event it was handed
    assert seen == list(range(1, 201))  # in revision order, none after the raise lost
    assert "raised on revision" in caplog.text
    assert "ValueError: three" in caplog.text


@pytest.mark.parametrize("exc", [GeneratorExit(), SystemExit(3), BaseException()])
def test_a_callback_raising_a_base_exception_is_logged_and_the_next_runs(
    backend: str, caplog: pytest.LogCaptureFixture, exc: BaseException
) -> None:
    # It once ended the callback's thread: every later event queued for
    # nobody, and the writers were pushed back for good once it was full.
    seen: list[int] = []

    def callback(event: object) -> None:
        assert isinstance(event, StateChanged)
        seen.append(event.new_value)
        if event.new_value == 1:
            raise exc

    with Store({"n": 0}, backend=backend) as store:
        store.subscribe(callback, "n")
        for n in range(1, 6):
            store.set("n", n)
    assert seen == [1, 2, 3, 4, 5]
    assert "raised on revision 1" in caplog.text


def test_a_callback_may_unsubscribe_itself(backend: str) -> None:
    calls: list[int] = []
    gone = threading.Event()
    with Store({"n": 0}, backend=backend) as store:

        def once(event: object) -> None:
            calls.append(1)
            unsubscribe()
            gone.set()

        unsubscribe = store.subscribe(once, "n")
        store.set("n", 1)
        assert gone.wait(5)
        store.set("n", 2)
        store.set("n", 3)
    assert calls == [1]


def test_a_slow_callback_pushes_back_instead_of_queueing_without_bound(
    backend: str,
) -> None:
    release = threading.Event()
    handled: list[object] = []

    def slow(event: object) -> None:
        release.wait(10)
        handled.append(event)

    with Store({"n": 0}, backend=backend) as store:
        store.subscribe(slow, "n")
        try:
            for i in range(1, 201):  # past the callback's queue and the mailbox
                store.set("n", i)
            stats = next(iter(store._state.subscriber_statistics().values()))
        finally:
            release.set()
    # The callback's queue holds 64; the rest waited in the subscriber's
    # mailbox (64), then was dropped for a Resync, as for any slow subscriber.
    assert stats.queued == 64
    assert stats.dropped > 0
    assert isinstance(handled[-1], Resync)


def test_callback_events_keep_their_order_through_a_full_queue(backend: str) -> None:
    # The state hands events straight to the callback's thread while its
    # queue has room, and through the subscriber's mailbox once it has none:
    # the two ways never reorder or lose an event.
    release = threading.Event()
    seen: list[tuple[int, str]] = []
    done = threading.Event()

    def callback(event: object) -> None:
        release.wait(10)
        assert isinstance(event, StateChanged)
        seen.append((event.revision, event.path))
        if event.revision == 151:
            done.set()

    with Store({"n": 0}, backend=backend) as store:
        store.subscribe(callback)
        for i in range(1, 101):  # 64 in the callback's queue, the rest waiting
            store.set("n", i)
        stats = next(iter(store._state.subscriber_statistics().values()))
        release.set()
        with store.transaction():  # one delivery of two events
            store.set("a", 1)
            store.set("b", 2)
        for i in range(102, 152):
            store.set("n", i)
        assert done.wait(10)
    assert stats.peak > 0  # the mailbox was used
    expected = [(r, "n") for r in range(1, 101)] + [(101, "a"), (101, "b")]
    assert seen == expected + [(r, "n") for r in range(102, 152)]


def test_a_callback_that_keeps_up_costs_no_mailbox_turn(backend: str) -> None:
    seen: list[int] = []
    with Store({"n": 0}, backend=backend) as store:
        store.subscribe(lambda event: seen.append(event.revision), "n")  # type: ignore[union-attr]
        for i in range(1, 51):  # fewer than the callback's queue holds
            store.set("n", i)
        stats = next(iter(store._state.subscriber_statistics().values()))
    # Every event went straight to the callback's thread: never queued in
    # the subscriber's mailbox, yet acked and counted.
    assert (stats.delivered, stats.acks_ok, stats.peak) == (50, 50, 0)
    assert seen == list(range(1, 51))


def test_transaction_is_all_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with Store({"job": {"bins": 10, "sorted": 3}}, state_file=path) as store:
        store.save()
        before = path.read_bytes()
        with store.transaction():
            store.set("job.bins", 12)
            store.set("job.sorted", 0)
            assert store.get("job") == {"bins": 12, "sorted": 0}  # sees its writes
        assert store.get("job") == {"bins": 12, "sorted": 0}
        revision = store.revision

        def change_then_fail() -> None:
            with store.transaction():
                store.set("job.bins", 99)
                msg = "boom"
                raise RuntimeError(msg)

        with pytest.raises(RuntimeError):
            change_then_fail()
        assert store.get("job") == {"bins": 12, "sorted": 0}
        assert store.revision == revision
        assert path.read_bytes() == before  # nothing saved by the failed block


def test_autosave_writes_after_every_change(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    with Store(state_file=path, autosave=True) as store:
        store.set("a", 1)
        assert json.loads(path.read_text()) == {"a": 1}
        with store.transaction():
            store.set("b", 2)
        assert json.loads(path.read_text()) == {"a": 1, "b": 2}


def test_missing_file_starts_from_default_and_list_roots_work(tmp_path: Path) -> None:
    path = tmp_path / "runs.json"
    with Store(state_file=path, default=[]) as store:
        assert store.get() == []
        store.set("0", {"run": 1})
        store.set("1", {"run": 2})
    assert json.loads(path.read_text()) == [{"run": 1}, {"run": 2}]
    with Store(state_file=path, default=[]) as store:
        assert store.get("1.run") == 2


@pytest.mark.parametrize("content", [b"{not json", b"", b"[NaN]", b"\xff\xfe"])
def test_a_malformed_file_is_kept_aside(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.warns(RuntimeWarning, match="kept as"):
        store = Store(state_file=path)
    with store:
        assert store.get() == {}
        store.set("fresh", True)
    aside = [n for n in os.listdir(tmp_path) if ".corrupt-" in n]
    assert len(aside) == 1
    assert (tmp_path / aside[0]).read_bytes() == content  # never overwritten
    assert json.loads(path.read_text()) == {"fresh": True}


def test_state_dir_store_is_durable_per_call(tmp_path: Path) -> None:
    with Store(state_dir=tmp_path / "state") as store:
        store.set("a", 1)
        with store.transaction():
            store.set("b", [1, 2])
    with Store(state_dir=tmp_path / "state") as store:
        assert store.get() == {"a": 1, "b": [1, 2]}


def test_a_durable_set_returns_once_on_disk_even_while_the_loop_is_busy(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker thread that wrote the record releases the blocked caller
    # itself; here the event loop is held still from inside that write, so a
    # release that went through the loop would never come.
    with Store(state_dir=tmp_path / "state", backend=backend) as store:
        store.set("warm", 1)
        journal = store._state._core.persister.journal  # type: ignore[union-attr]
        write = journal.commit
        loop_held, let_loop_go = threading.Event(), threading.Event()

        def hold_loop() -> None:
            loop_held.set()
            let_loop_go.wait(10)

        def commit(blob: bytes, fsync: bool) -> None:
            if not loop_held.is_set():
                store._caller.submit(hold_loop)
                assert loop_held.wait(10)
            write(blob, fsync)

        monkeypatch.setattr(journal, "commit", commit)
        returned = threading.Event()
        caller = threading.Thread(target=lambda: (store.set("a", 2), returned.set()))
        caller.start()
        try:
            assert returned.wait(10), "the durable set waited for the event loop"
            assert not let_loop_go.is_set()
        finally:
            let_loop_go.set()
            caller.join(10)
        assert store.get("a") == 2
    with Store(state_dir=tmp_path / "state", backend=backend) as store:
        assert store.get() == {"warm": 1, "a": 2}


def test_a_store_call_costs_the_actor_no_extra_loop_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On asyncio the actor turns the loop once more before taking a batch
    # that holds a task's send (which may be cancelled meanwhile); a Store
    # call cannot be withdrawn, so a batch of Store calls alone skips it.
    from stateward.actors import _core

    settled: list[int] = []
    real_backend = _core.current_backend

    def spying_backend() -> Any:
        backend = real_backend()
        real_settle = backend.settle
        assert real_settle is not None  # asyncio

        async def settle() -> None:
            settled.append(1)
            await real_settle()

        return backend._replace(settle=settle)

    monkeypatch.setattr(_core, "current_backend", spying_backend)
    with Store(backend="asyncio") as store:
        for i in range(20):
            store.set("n", i)
            assert store.get("n") == i
        assert settled == []
        store._call(store._state.send, Set("n", 99))  # a task's send: settles
        assert settled
        assert store.get("n") == 99


def test_pickle_only_when_named(tmp_path: Path) -> None:
    path = tmp_path / "state.pickle"
    with Store(state_file=path, serializer=PickleSerializer()) as store:
        store.set("a", [1, {"b": None}])
    with Store(state_file=path, serializer=PickleSerializer()) as store:
        assert store.get("a") == [1, {"b": None}]
    # The default serializer does not unpickle: the file is malformed to it.
    with pytest.warns(RuntimeWarning), Store(state_file=path) as store:
        assert store.get() == {}


def test_json_serializer_refuses_nan() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        JsonSerializer().loads(b"[NaN]")


def test_many_threads_at_once() -> None:
    with Store() as store:

        def worker(w: int) -> None:
            for i in range(100):
                assert store.set(f"w{w}.{i}", i)
                assert store.get(f"w{w}.{i}") == i  # read-your-writes per thread

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.revision == 800
        state = store.get_state()
        assert all(state[f"w{w}"] == {str(i): i for i in range(100)} for w in range(8))


def test_transactions_belong_to_their_thread() -> None:
    with Store({"n": 0}) as store:
        inside = threading.Event()
        release = threading.Event()

        def txn() -> None:
            with store.transaction():
                store.set("n", 1)
                inside.set()
                release.wait(5)

        t = threading.Thread(target=txn)
        t.start()
        assert inside.wait(5)
        assert store.get("n") == 0  # not visible outside its thread until commit
        release.set()
        t.join()
        assert store.get("n") == 1


def test_close_is_idempotent(tmp_path: Path) -> None:
    store = Store(state_file=tmp_path / "s.json")
    store.close()
    store.close()
    assert "closed" in repr(store)


def test_unnamed_callbacks_are_named_uniquely_and_names_are_checked() -> None:
    from stateward import DuplicateNameError

    got: list[object] = []
    both = threading.Barrier(3)

    def callback(event: object) -> None:
        got.append(event)
        both.wait(5)

    with Store() as store:
        store.subscribe(callback)
        store.subscribe(callback)  # the same function twice: two subscribers
        store.subscribe(print, name="taken")
        with pytest.raises(DuplicateNameError):
            store.subscribe(print, name="taken")
        store.set("a", 1)
        both.wait(5)
    assert len(got) == 2


def _own_json_calls(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[object]:
    """The values *module* hands to own_json (checked and copied) from now on."""
    calls: list[object] = []
    real = module.own_json

    def counting(value: object, *args: Any, **kwargs: Any) -> Any:
        calls.append(value)
        return real(value, *args, **kwargs)

    monkeypatch.setattr(module, "own_json", counting)
    return calls


def test_the_initial_tree_is_checked_and_copied_once(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    # The Store checks and copies its tree before it starts its thread; the
    # actor takes that copy as it is (a second copy cost a second at a
    # million leaves).
    from stateward import StateActor
    from stateward.actors import state as state_module

    calls = _own_json_calls(monkeypatch, state_module)
    tree = {"a": {"b": 1}}
    with Store(tree, backend=backend) as store:
        tree["a"]["b"] = 2  # the caller's object: not the Store's
        assert store.get("a.b") == 1
    assert calls == []
    StateActor(initial={"x": 1})  # given anything else, the actor copies it
    assert calls == [{"x": 1}]


def test_a_json_state_file_is_checked_in_place_and_a_bad_one_names_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stateward.actors import _store_files

    copies = _own_json_calls(monkeypatch, _store_files)
    good = tmp_path / "good.json"
    good.write_text('{"jobs": {"a": [1, 2.5, "x"]}}')
    with Store(state_file=good) as store:
        assert store.get("jobs.a") == [1, 2.5, "x"]
    assert copies == []  # decoded JSON is private already: not copied
    bad = tmp_path / "bad.json"
    bad.write_text('{"jobs": {"a": [1, 18446744073709551616]}}')  # 2**64
    with (
        pytest.warns(RuntimeWarning) as caught,
        Store(state_file=bad, default={"fresh": True}) as store,
    ):
        assert store.get("") == {"fresh": True}
    message = str(caught[0].message)
    assert "at state file['jobs']['a'][1]" in message
    assert "64-bit" in message
