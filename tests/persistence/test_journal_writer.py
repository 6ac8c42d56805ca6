"""The journal is written by whichever thread needs it first, one at a time, in order.

A durable Store call writes its own record (and whatever is queued with it)
in the thread that called, instead of waiting for the persister's worker
thread; the worker still writes what no Store call does. These tests hold
the queue to the journal's rules (the file's order is the queue's, a
rotation is done where it stands, a failure is final, nothing is written
twice or lost when a write is interrupted) and the Store to its guarantees.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from stateward import Set, Store, open_state
from stateward.actors._handoff import ThreadSignal
from stateward.actors._journal_writer import Commit, JournalWriter, Rotation
from stateward.actors.persistence import _journal

if TYPE_CHECKING:
    from pathlib import Path


class _FakeJournal:
    """Records the calls; *fail* makes commit raise it (after writing, if *late*)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.size = 0
        self.fail: BaseException | None = None
        self.late = False

    def commit(self, blob: bytes, fsync: bool) -> None:
        if self.fail is not None and not self.late:
            raise self.fail
        self.calls.append(("commit", blob))
        self.size += len(blob)
        if self.fail is not None:
            raise self.fail

    def open_segment(self, first: int) -> None:
        self.calls.append(("open_segment", first))

    def close(self) -> None:
        self.calls.append(("close", None))


def _writer() -> tuple[JournalWriter, _FakeJournal, list[Any]]:
    journal = _FakeJournal()
    seen: list[Any] = []
    writer = JournalWriter(
        journal,  # type: ignore[arg-type]
        False,
        lambda group, fsync: seen.append([c.revision for c in group]),
        lambda revision: seen.append(("rotated", revision)),
        lambda: seen.append("failed"),
    )
    return writer, journal, seen


def _commit(revision: int) -> Commit:
    return Commit([f"r{revision};".encode()], [], [], revision)


def test_a_write_takes_what_is_queued_in_order_and_rotates_where_asked() -> None:
    writer, journal, seen = _writer()
    c1, c2, rotation, c3 = _commit(1), _commit(2), Rotation(2), _commit(3)
    for item in (c1, c2, rotation, c3):
        writer.put(item)
    assert writer.write_through(c3)
    assert journal.calls == [
        ("commit", b"r1;r2;"),
        ("open_segment", 3),
        ("commit", b"r3;"),
    ]
    assert seen == [[1, 2], ("rotated", 2), [3]]
    assert c1.written
    assert c2.written
    assert rotation.written
    assert c3.written
    assert writer.commits == 2


def test_a_write_stops_at_its_own_commit_before_a_rotation() -> None:
    writer, journal, _ = _writer()
    c1, rotation, c2 = _commit(1), Rotation(1), _commit(2)
    for item in (c1, rotation, c2):
        writer.put(item)
    assert writer.write_through(c1)
    assert journal.calls == [("commit", b"r1;")]
    assert not rotation.written
    assert writer.write_through(c2)  # another writer goes on from there
    assert journal.calls[1:] == [("open_segment", 2), ("commit", b"r2;")]


def test_what_another_writer_wrote_is_not_written_again() -> None:
    writer, journal, _ = _writer()
    c1, c2 = _commit(1), _commit(2)
    writer.put(c1)
    writer.put(c2)
    assert writer.write_through(c2)
    assert writer.write_through(c1)
    assert writer.write_through(c2)
    assert journal.calls == [("commit", b"r1;r2;")]


def test_a_failed_write_is_final_and_writes_nothing_more() -> None:
    writer, journal, seen = _writer()
    journal.fail = OSError(28, "No space left on device")
    c1, c2 = _commit(1), _commit(2)
    writer.put(c1)
    assert not writer.write_through(c1)
    assert writer.error is journal.fail
    assert seen == ["failed"]
    journal.fail = None  # the disk has room again: the state still fail-stops
    writer.put(c2)
    assert not writer.write_through(c2)
    assert not c1.written
    assert not c2.written
    assert journal.calls == []


def test_an_interruption_inside_the_write_leaves_it_queued() -> None:
    # The journal cuts the segment back when interrupted in a write (its
    # size unchanged): the commit stays queued and is written once, later.
    writer, journal, seen = _writer()
    journal.fail = KeyboardInterrupt()
    c1 = _commit(1)
    writer.put(c1)
    with pytest.raises(KeyboardInterrupt):
        writer.write_through(c1)
    assert not c1.written
    journal.fail = None
    assert writer.write_through(c1)
    assert journal.calls == [("commit", b"r1;")]
    assert seen == [[1]]


def test_an_interruption_after_the_write_counts_it_as_written() -> None:
    # Written, then interrupted (a Ctrl-C in the main thread): rewriting it
    # would put the record twice in the journal.
    writer, journal, seen = _writer()
    journal.fail = KeyboardInterrupt()
    journal.late = True
    c1, c2 = _commit(1), _commit(2)
    writer.put(c1)
    with pytest.raises(KeyboardInterrupt):
        writer.write_through(c1)
    assert c1.written
    assert seen == [[1]]
    journal.fail = None
    writer.put(c2)
    assert writer.write_through(c2)
    assert journal.calls == [("commit", b"r1;"), ("commit", b"r2;")]


def test_a_closed_writer_writes_nothing() -> None:
    writer, journal, _ = _writer()
    c1 = _commit(1)
    writer.put(c1)
    writer.close()
    assert not writer.write_through(c1)
    assert journal.calls == [("close", None)]


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


def _spy_writers(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the journal's commits and rotations by the kind of thread doing them."""
    who: Counter[str] = Counter()

    def kind() -> str:
        name = threading.current_thread().name
        return "store" if name.startswith(("MainThread", "caller")) else "worker"

    commit, rotate = _journal.Journal.commit, _journal.Journal.open_segment

    def spy_commit(self: Any, blob: bytes, fsync: bool) -> None:
        who[f"commit by {kind()}"] += 1
        commit(self, blob, fsync)

    def spy_rotate(self: Any, first: int) -> None:
        who[f"rotation by {kind()}"] += 1
        rotate(self, first)

    monkeypatch.setattr(_journal.Journal, "commit", spy_commit)
    monkeypatch.setattr(_journal.Journal, "open_segment", spy_rotate)
    return who


def test_a_durable_store_set_is_written_by_the_thread_that_calls(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    who = _spy_writers(monkeypatch)
    with Store({"n": 0}, state_dir=tmp_path, backend=backend) as store:
        for i in range(1, 51):
            store.set("n", i)
        assert store._state._core.persister.durable_revision == 50  # type: ignore[union-attr]
    assert who["commit by store"] >= 45, who  # the worker only where it won a race
    with Store(state_dir=tmp_path, backend=backend) as store:
        assert store.get("n") == 50


def test_store_threads_through_snapshots_lose_nothing(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Four threads, a rotation of the journal every few records: whichever
    # thread writes, the records land in order, each segment where it
    # belongs, and what every call was told is durable comes back.
    who = _spy_writers(monkeypatch)
    done: dict[str, int] = {}
    with Store(
        {"k": {}},
        state_dir=tmp_path,
        snapshot_every=7,
        keep_snapshots=2,
        backend=backend,
    ) as store:

        def caller(t: int) -> None:
            for i in range(100):
                store.set(f"k.t{t}", i)
            done[f"t{t}"] = 99

        threads = [
            threading.Thread(target=caller, args=(t,), name=f"caller {t}")
            for t in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert store.get("k") == done == {f"t{t}": 99 for t in range(4)}
    assert who["rotation by store"] >= 1, who  # the path was taken
    with Store(state_dir=tmp_path, backend=backend) as store:  # recovery
        assert store.get("k") == done
        assert store._state.revision == 400


@pytest.mark.anyio
async def test_a_commit_its_thread_does_not_write_is_written_by_the_worker(
    tmp_path: Path,
) -> None:
    # A Store call's thread is handed its commit to write; should it never
    # get to it (a Ctrl-C at that instant), the persister's worker writes
    # it after a short wait and answers it: the state does not stall.
    async with open_state({"n": 0}, state_dir=tmp_path) as state:
        request = state._request(Set("n", 1), None, ThreadSignal())
        handed = request.done
        state._put_from_thread(request)  # as the Store's loop callback does
        assert handed.is_set()
        commit = request.commit
        assert commit is not None
        assert not commit.written
        answer = request.done
        assert isinstance(answer, ThreadSignal)
        assert answer is not handed
        with anyio.fail_after(10):
            await anyio.to_thread.run_sync(answer.block, lambda: True)
        assert commit.written
        assert request.error is None
        assert request.receipt is not None
        assert state._core.persister.durable_revision == 1  # type: ignore[union-attr]
        await state.send(Set("n", 2))  # and the state goes on
    async with open_state(state_dir=tmp_path) as state:
        assert state.get_nowait("n") == 2
