"""A durable Store call writes its own journal record, in its own thread.

The thread blocked on a durable write is woken once its action is applied
and the persister is about to wait for the disk: it writes (and syncs) the
unwritten records up to its own under the persister's write lock, and the
persister's task then only answers and delivers. These tests hold that
shortcut to the journal's guarantees: the calling thread is the writer;
records are written once and in order, whoever writes them, with async
senders, Store threads and snapshots mixed; a thread that never helps
delays its commit by a bounded wait, and a late one writes nothing twice;
a helping thread's failed fsync fails the state as the persister's own
would; nothing is written once the state is closed.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
from typing import TYPE_CHECKING

import anyio
import pytest
from parked import parked

from stateward import DurabilityError, Set, Store, open_state
from stateward.actors import _persister
from stateward.actors._files import Files
from stateward.actors._handoff import ThreadSignal
from stateward.actors._requests import Commit

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from stateward.actors._persister import Persister


class _Syncs(Files):
    """Records which thread made each fsync; fails them from *fail_at* on."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.threads: list[int] = []

    def fsync(self, fd: int) -> None:
        self.threads.append(threading.get_ident())
        if self.fail_at is not None and len(self.threads) >= self.fail_at:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        super().fsync(fd)


def _persister_of(store: Store) -> Persister:
    persister = store._state._core.persister
    assert persister is not None
    return persister


@pytest.fixture
def patient(monkeypatch: pytest.MonkeyPatch) -> None:
    """The persister waits for its helping threads for as long as they take.

    So that which thread writes does not depend on how loaded the machine
    is: with the default wait, a thread that takes longer than that to wake
    leaves the write to the persister's worker (correctly, but then these
    tests could not tell the two apart).
    """
    monkeypatch.setattr(_persister, "HELP_WAIT", 60.0)


@pytest.mark.usefixtures("patient")
def test_a_durable_store_set_is_written_and_synced_by_its_own_thread(
    tmp_path: Path, backend: str
) -> None:
    with Store({"n": 0}, state_dir=tmp_path, backend=backend) as store:
        persister = _persister_of(store)
        syncs = persister.journal.files = _Syncs()
        commits = persister.writer.commits
        for i in range(1, 21):
            store.set("n", i)
            assert persister.durable_revision == persister.synced_revision == i
        assert syncs.threads == [threading.get_ident()] * 20
        assert persister.writer.commits == commits + 20
    with Store(state_dir=tmp_path, backend=backend) as store:
        assert store.get("n") == 20


@pytest.mark.usefixtures("patient")
def test_async_senders_store_threads_and_snapshots_mixed_lose_nothing(
    tmp_path: Path, backend: str
) -> None:
    # Each record is written once and in revision order, whoever writes it:
    # recovery refuses a journal whose records are out of order or doubled,
    # and every value each writer was told is durable comes back.
    with Store(
        {"t": {}, "a": {}},
        state_dir=tmp_path,
        snapshot_every=9,
        keep_snapshots=2,
        backend=backend,
    ) as store:
        persister = _persister_of(store)
        syncs = persister.journal.files = _Syncs()
        state = store._state

        async def async_sender() -> None:
            for i in range(150):
                await state.send(Set(f"a.{i % 10}", i), durable=True)

        def caller(t: int) -> None:
            for i in range(60):
                store.set(f"t.{t}", i)

        threads = [threading.Thread(target=caller, args=(t,)) for t in range(4)]
        threads.append(threading.Thread(target=store._call, args=(async_sender,)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        expected = {
            "t": {str(t): 59 for t in range(4)},
            "a": {str(k): 140 + k for k in range(10)},
        }
        assert store.get("") == expected
        assert state.revision == 4 * 60 + 150
        assert persister.durable_revision == state.revision
        store._call(persister.snapshots.idle.wait)  # (one may be under way)
        assert persister.snapshots.count >= 1
        helpers = {t.ident for t in threads[:4]}
        assert helpers & set(syncs.threads)  # the Store threads wrote some
    with Store(state_dir=tmp_path, backend=backend) as store:
        assert store.get("") == expected
        assert store._state.revision == 4 * 60 + 150


@pytest.mark.anyio
async def test_a_commit_whose_thread_never_helps_is_written_by_the_persister(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_persister, "HELP_WAIT", 0.01)
    async with open_state({"n": 0}, state_dir=tmp_path) as state:
        persister = state._core.persister
        assert persister is not None
        with anyio.fail_after(5):
            await parked(state)
        signal = ThreadSignal()
        state._put_from_thread(state._request(Set("n", 1), None, signal))
        # No thread blocks on the signal: its job is never run.
        with anyio.fail_after(10):
            assert await state.wait_durable() == 1
        assert signal.is_set()
        job = signal._help
        assert job is not None  # it was enlisted
        commits = persister.writer.commits
        await anyio.to_thread.run_sync(job)  # a late helper: nothing twice
        assert persister.writer.commits == commits
        await state.send(Set("n", 2), durable=True)
    async with open_state(state_dir=tmp_path) as state:
        assert state.get_nowait("n") == 2
        assert state.revision == 2


@pytest.mark.usefixtures("patient")
def test_a_helping_threads_failed_fsync_fails_the_state_and_loses_nothing(
    tmp_path: Path, backend: str
) -> None:
    acked: list[int] = []
    with Store({"k": {}}, state_dir=tmp_path, backend=backend) as store:
        persister = _persister_of(store)
        syncs = persister.journal.files = _Syncs(fail_at=6)

        def set_until_refused() -> None:
            for i in range(20):
                store.set(f"k.{i}", i)
                acked.append(i)

        with pytest.raises(DurabilityError):
            set_until_refused()
        assert acked == [0, 1, 2, 3, 4]
        assert syncs.threads == [threading.get_ident()] * 6  # it was the helper
        with pytest.raises(DurabilityError):
            store.set("after", 1)
    with Store(state_dir=tmp_path, backend=backend) as store:
        got = store.get("k")
    assert got == {str(i): i for i in acked}


class _InterruptedOnce(Files):
    """Interrupts its first fsync (before syncing), once; counts the writes.

    Of records: the zeros a segment is written ahead with are not counted.

    *how*: ``"raised"`` raises KeyboardInterrupt itself; ``"signal"`` sends
    this process a real SIGINT, whose handler raises it as the call returns;
    ``None`` never interrupts.
    """

    def __init__(self, how: str | None = "raised") -> None:
        self.how = how
        self.writes = 0

    def write(self, fd: int, data: bytes) -> None:
        self.writes += data.count(0) != len(data)
        super().write(fd, data)

    def fsync(self, fd: int) -> None:
        how, self.how = self.how, None
        if how == "raised":
            raise KeyboardInterrupt
        if how == "signal":
            signal.raise_signal(signal.SIGINT)
        super().fsync(fd)


@pytest.fixture
def interruptible() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt here, however the tests were started.

    A shell without job control starts a background command with SIGINT
    ignored, and Python then leaves it ignored: a real SIGINT would do
    nothing.
    """
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.mark.usefixtures("patient", "interruptible")
@pytest.mark.parametrize("how", ["raised", "signal"])
def test_a_helping_thread_interrupted_during_its_fsync_loses_nothing(
    tmp_path: Path, backend: str, how: str
) -> None:
    # The interrupt reaches the caller; the journal's commit cuts the records
    # back and the persistence task writes them again: one commit, durable.
    assert threading.current_thread() is threading.main_thread()  # (SIGINT)
    with Store({"n": 0}, state_dir=tmp_path, backend=backend) as store:
        persister = _persister_of(store)
        files = persister.journal.files = _InterruptedOnce(how)
        with pytest.raises(KeyboardInterrupt):
            store.set("n", 1)
        assert files.how is None  # (it did interrupt)
        assert store.get("n") == 1  # (returns once its record is committed)
        assert persister.durable_revision == persister.synced_revision == 1
        store.set("n", 2)
    with Store(state_dir=tmp_path, backend=backend) as store:
        assert store.get("n") == 2
        assert store._state.revision == 2


@pytest.mark.usefixtures("patient")
def test_interrupted_after_writing_before_marking_is_not_written_twice(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The window a KeyboardInterrupt may also land in: the records are in the
    # journal, not yet marked written. The next writer finds them there by
    # the journal's size and marks them; written again, recovery would
    # refuse the journal (two records of one revision).
    with Store({"n": 0}, state_dir=tmp_path, backend=backend) as store:
        writer = _persister_of(store).writer
        files = writer.journal.files = _InterruptedOnce(None)  # (counts writes)
        mark = writer._mark
        interrupted: list[bool] = []

        def mark_once_interrupted(group: list[Commit], fsync: bool) -> None:
            if not interrupted:
                interrupted.append(True)
                raise KeyboardInterrupt
            mark(group, fsync)

        monkeypatch.setattr(writer, "_mark", mark_once_interrupted)
        with pytest.raises(KeyboardInterrupt):
            store.set("n", 1)
        assert store.get("n") == 1
        assert files.writes == 1  # not written twice
        assert writer.intent is None
        store.set("n", 2)
        assert files.writes == 2
    with Store(state_dir=tmp_path, backend=backend) as store:
        assert store.get("n") == 2
        assert store._state.revision == 2


class _NotCutBack(_InterruptedOnce):
    """As _InterruptedOnce, and the segment cannot be cut back after it."""

    def truncate(self, path: str, size: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))


@pytest.mark.usefixtures("patient")
def test_an_interrupted_write_that_cannot_be_cut_back_fails_the_state(
    tmp_path: Path, backend: str
) -> None:
    # What follows a tail that may hold half a record would be unreadable:
    # nothing more is written, the state fails, and what was acknowledged
    # before comes back.
    with Store({"n": 0}, state_dir=tmp_path, backend=backend) as store:
        store.set("n", 1)
        _persister_of(store).journal.files = _NotCutBack()
        with pytest.raises(KeyboardInterrupt):
            store.set("n", 2)
        with pytest.raises(DurabilityError):
            store.set("n", 3)
    with Store(state_dir=tmp_path, backend=backend) as store:
        assert store.get("n") in (1, 2)  # (2: its record was whole on disk)
        assert store._state.revision == store.get("n")


def test_after_the_state_closed_a_helping_thread_writes_nothing(
    tmp_path: Path, backend: str
) -> None:
    with Store({"n": 0}, state_dir=tmp_path, backend=backend) as store:
        persister = _persister_of(store)
        store.set("n", 1)
    segment = persister.journal.config.state_dir
    sizes = {
        name: os.path.getsize(os.path.join(segment, name))
        for name in os.listdir(segment)
    }
    late = Commit([b"not a record"], [], [], persister.durable_revision + 1)
    persister.writer.unwritten.append(late)

    class _Set:
        def set(self) -> None:
            pass

    persister.help(late, _Set())  # type: ignore[arg-type]
    assert persister.writer.unwritten[-1] is late
    assert not late.written
    assert persister.durable_revision == late.revision - 1
    after = {
        name: os.path.getsize(os.path.join(segment, name))
        for name in os.listdir(segment)
    }
    assert after == sizes


def test_the_journal_is_closed_under_the_writers_lock(
    tmp_path: Path, backend: str
) -> None:
    # A helping thread may still be writing as the state stops: the segment's
    # descriptor must not be closed (and its number reused) under it.
    held: list[bool] = []
    with Store({"n": 0}, state_dir=tmp_path, backend=backend) as store:
        persister = _persister_of(store)
        journal = persister.journal
        close = journal.close

        def closing() -> None:
            held.append(persister.writer.lock.locked())
            close()

        journal.close = closing  # type: ignore[method-assign]
        store.set("n", 1)
    assert held == [True]
    assert journal.fd is None


@pytest.mark.anyio
async def test_a_commit_without_records_before_a_snapshot_leaves_nothing_unwritten(
    tmp_path: Path,
) -> None:
    # A commit may have no records and the revision of the one before it (a
    # durable send that changed nothing). Found by the state machine: the
    # writers knew commits by revision, so such a commit stayed queued, the
    # snapshot order behind it was never taken off the queue, and from then
    # on every write stopped there: senders were answered with nothing
    # written, and a read waiting for the journal waited forever.
    async with open_state({"a": 0}, state_dir=tmp_path) as state:
        persister = state._core.persister
        assert persister is not None
        with anyio.fail_after(10):
            await state.send(Set("a", 1), durable=True)
            await state.send(Set("a", 1), durable=True)  # changes nothing
            await parked(state)
            # As the actor queues them: a commit without records, at the
            # revision of the one before it, then a snapshot of that revision.
            persister.submit_nowait(Commit([], [], [], state.revision))
            await persister.submit_snapshot(state._core.tree)
            await state.send(Set("a", 2), durable=True)
            assert await state.get("a") == 2  # (waits for the journal)
            assert persister.durable_revision == state.revision == 2
    async with open_state(state_dir=tmp_path) as state:
        assert state.get_nowait("a") == 2
        assert state.revision == 2
