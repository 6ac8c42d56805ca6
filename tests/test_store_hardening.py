"""The synchronous Store under threads, after close, and inside an event loop."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import trio

from stateward import (
    Delete,
    InvalidActionError,
    RevisionMismatchError,
    StateClosedError,
    StateFileChangedError,
    Store,
    open_state,
)

THREADS = 8
EACH = 50


def _run_threads(fn):
    threads = [threading.Thread(target=fn) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()


def test_10_transactions_from_threads_lose_no_increment():
    with Store({"n": 0}) as store:

        def work():
            for _ in range(EACH):
                with store.transaction():
                    store.set("n", store.get("n") + 1)

        _run_threads(work)
        assert store.get("n") == THREADS * EACH


def test_10_a_plain_write_during_a_transaction_is_a_typed_conflict():
    with Store({"n": 0, "other": 0}) as store:
        ready, go = threading.Event(), threading.Event()

        def writer():
            ready.wait(10)
            store.set("other", 1)
            go.set()

        t = threading.Thread(target=writer)
        t.start()

        def increment_while_another_thread_writes():
            with store.transaction():
                store.set("n", store.get("n") + 1)
                ready.set()
                go.wait(10)

        with pytest.raises(RevisionMismatchError):
            increment_while_another_thread_writes()
        t.join()
        assert store.get("") == {"n": 0, "other": 1}  # nothing of it applied


def test_10_update_retries_conflicts_until_it_applies():
    with Store({"n": 0}) as store:

        def mixed():
            for i in range(EACH):
                if i % 2:
                    store.update(lambda s: s.set("n", s.get("n") + 1), attempts=100)
                else:
                    store.set(f"noise.{threading.get_ident()}", i)  # conflicts

        _run_threads(mixed)
        assert store.get("n") == THREADS * (EACH // 2)


def test_10_autosave_from_threads_ends_with_the_newest_tree(tmp_path):
    path = tmp_path / "state.json"
    with Store({}, state_file=path, autosave=True) as store:

        def work():
            for i in range(EACH):
                store.set(f"t{threading.get_ident()}", i)

        _run_threads(work)
        on_disk = json.loads(path.read_text())
        assert on_disk == store.get("")  # the last save is the newest tree
    assert json.loads(path.read_text()) == on_disk


def test_10_store_calls_after_close_raise_state_closed():
    store = Store({"a": 1})
    store.close()
    for call in (
        lambda: store.get("a"),
        lambda: store.set("a", 2),
        lambda: store.delete("a"),
        lambda: store.subscribe(print),
        lambda: store.transaction().__enter__(),
    ):
        with pytest.raises(StateClosedError):
            call()


def test_10_store_with_trio_inside_trio_is_a_typed_error():
    async def main():
        with pytest.raises(InvalidActionError, match="inside a running trio task"):
            Store(backend="trio")

    trio.run(main)


def test_10_delete_missing_ok_must_be_a_bool():
    with pytest.raises(InvalidActionError, match="missing_ok"):
        Delete("a", missing_ok="no")  # type: ignore[arg-type]


@pytest.mark.anyio
@pytest.mark.parametrize("timeout", [float("nan"), "x", -1])
async def test_10_stop_checks_its_timeout(timeout):
    async with open_state({}) as state:
        with pytest.raises(InvalidActionError, match="timeout"):
            await state.stop(timeout=timeout)


@pytest.mark.anyio
async def test_10_absurd_sizes_and_zero_timeouts_are_refused():
    with pytest.raises(InvalidActionError, match="mailbox_size"):
        async with open_state({}, mailbox_size=10**18):
            pass
    async with open_state({}) as state:
        with pytest.raises(InvalidActionError, match="mailbox_size"):
            await state.subscribe("", print, mailbox_size=10**18)
        with pytest.raises(InvalidActionError, match="handler_timeout"):
            await state.subscribe("", print, handler_timeout=0)


def test_nested_transactions_write_the_file_once_at_the_outermost_exit(tmp_path):
    path = tmp_path / "state.json"
    with Store({"n": 0}, state_file=path, autosave=True) as store:
        store.save()
        written = path.stat().st_mtime_ns, path.read_text()
        with store.transaction():
            store.set("n", 1)
            with store.transaction():
                store.set("m", 2)
            assert (path.stat().st_mtime_ns, path.read_text()) == written
            assert store.revision == 0  # nothing applied yet
        assert store.revision == 1  # one revision for both
        assert json.loads(path.read_text()) == {"n": 1, "m": 2}


def test_an_idle_store_never_overwrites_another_writers_file(tmp_path):
    path = tmp_path / "runs.json"
    idle = Store(state_file=path, default=[])
    with Store(state_file=path, default=[]) as other:
        other.set("", ["new"])
    idle.close()  # changed nothing: writes nothing
    assert json.loads(path.read_text()) == ["new"]


def test_two_writers_on_one_file_never_silently_lose_writes(tmp_path):
    path = tmp_path / "runs.json"
    first = Store(state_file=path, default=[])
    second = Store(state_file=path, default=[])
    first.set("", ["first"])
    first.save()
    second.set("", ["second"])
    with pytest.raises(StateFileChangedError, match="changed by another writer"):
        second.save()
    assert json.loads(path.read_text()) == ["first"]  # not overwritten
    first.close()  # saved already: writes nothing
    with pytest.raises(StateFileChangedError):
        second.close()  # its change would overwrite: refused, still closed
    with pytest.raises(StateClosedError):
        second.get("")
    assert json.loads(path.read_text()) == ["first"]
    third = Store(state_file=path, default=[])
    third.set("", ["third"])
    Path(path).write_text('["edited by hand"]')
    third.save(force=True)  # overwrites on purpose
    third.close()
    assert json.loads(path.read_text()) == ["third"]


def test_bad_arguments_are_typed_errors_before_anything_runs(tmp_path, backend):
    # A junk-argument run of the Store's API found these raising TypeError,
    # LookupError or UnicodeEncodeError, or (a callback that is no callable)
    # taken and failing at every event, logged.
    for bad in (-1, "x\ud800", "", "a\0b"):
        with pytest.raises(InvalidActionError, match="state_file"):
            Store(state_file=bad, backend=backend)
        with pytest.raises(InvalidActionError, match="state_dir"):
            Store(state_dir=bad, backend=backend)
    for bad in (None, -1, "curio", []):
        with pytest.raises(InvalidActionError, match="backend"):
            Store(backend=bad)
    with Store({"n": 1}, state_file=tmp_path / "s.json", backend=backend) as store:
        for bad in (-1, "x\ud800", ""):
            with pytest.raises(InvalidActionError, match="path"):
                store.save(bad)
        with pytest.raises(InvalidActionError, match="callback"):
            store.subscribe("n")
        with pytest.raises(InvalidActionError, match="fn"):
            store.update(None)
        store.set("n", 2)  # (the Store is whole)
        assert store.get("n") == 2
