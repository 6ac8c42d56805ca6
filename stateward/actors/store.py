"""The synchronous facade: a state actor for plain code, no event loop in sight.

A :class:`Store` runs one state actor on one background event loop thread
(anyio's blocking portal) and turns every call into a blocking call on it.
It is safe to use from any number of threads at once; each call is one
action, applied whole, in the order the calls reach the actor.

Two ways to keep it on disk:

* ``state_file="state.json"``: one JSON document, written atomically by
  :meth:`Store.save` (temp file, fsync, rename, fsync of the directory), and
  at :meth:`Store.close`; ``autosave=True`` saves after every change. Simple,
  and O(size of the tree) per save.
* ``state_dir="./state"``: the journal and snapshots of
  :mod:`stateward.actors.persistence`; every change is durable when the call
  returns, at a cost independent of the tree's size.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from typing import TYPE_CHECKING, Any, cast, final

from anyio.from_thread import start_blocking_portal

from .._checks import absolute_path
from .._errors import (
    ActionRejectedError,
    InvalidActionError,
    StateClosedError,
    StateFileChangedError,
    short_repr,
)
from .._json import JSON, own_json
from ..messages.actions import Action, Delete, Set
from ..paths import parse_path
from . import _large_reads
from ._files import Files
from ._handoff import LoopCaller, ThreadSignal
from ._large_reads import Rebuild, encode_frames, read_at
from ._reaper import free_in_background
from ._running import RUNNING
from ._store_events import StoreCheckpoints, StoreEvents
from ._store_files import (
    JsonSerializer,
    PickleSerializer,
    Serializer,
    file_identity,
    load_state_file,
)
from ._store_txn import StoreTransactions
from .persistence import _fork
from .state import Owned, StateHandle, open_state

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.from_thread import BlockingPortal

    from ..paths import PathLike, Segments
    from ..tree import Tree
    from .persistence import Durability

__all__ = [
    "JsonSerializer",
    "PickleSerializer",
    "Serializer",
    "Store",
    "StoreCheckpoints",
]

logger = logging.getLogger(__name__)


@final
class Store(StoreEvents, StoreTransactions):
    """A state tree for synchronous code: get, set, delete, subscribe, save.

    Args:
        initial: The starting tree (any JSON value, a list too) when there is
            no file yet; also accepted as *default*.
        state_file: A JSON document to load at start and :meth:`save` to.
            Missing: start from *initial*. Malformed: start from *initial*
            with a warning, the bad file renamed aside (never overwritten).
        default: Alias of *initial* for whole-document stores
            (``Store(state_file="runs.json", default=[])``).
        autosave: With *state_file*, save after every change.
        serializer: How *state_file* is encoded; JSON by default.
        state_dir: Persist through the journal instead (see
            :func:`~stateward.open_state`); exclusive with *state_file*.
        durability: With *state_dir*: ``"fsync"`` (default), ``"flush"``,
            ``"none"``.
        snapshot_every, keep_snapshots, snapshot_interval: With *state_dir*:
            see :func:`~stateward.open_state`.
        freeze_gc: Keep the tree out of the garbage collector's full
            collections (see :func:`~stateward.open_state`): by default with
            *state_dir*, or when the initial tree is large, or once a full
            collection lasts over 10 ms.
        backend: The event loop the background thread runs: ``"asyncio"``
            (default) or ``"trio"``.

    Concurrency: every method may be called from any thread, including from
    a subscriber callback; calls are serialized by the state actor. A
    :meth:`transaction` belongs to the thread that opened it. With
    *state_dir*, a write that waits for the disk is written and synced by
    the calling thread itself, under the journal's lock, once the actor has
    applied it (with the records queued before it): the call blocks for
    that write, as it would for a worker thread's; interrupted (a Ctrl-C),
    the call raises and the records are written by the state, once
    (``docs/concurrency.md``).
    """

    def __init__(
        self,
        initial: object = None,
        *,
        state_file: str | os.PathLike[str] | None = None,
        default: object = None,
        autosave: bool = False,
        serializer: Serializer | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        durability: Durability = "fsync",
        snapshot_every: int | None = None,
        keep_snapshots: int = 3,
        snapshot_interval: float | None = None,
        freeze_gc: bool | None = None,
        backend: str = "asyncio",
    ) -> None:
        if state_file is not None and state_dir is not None:
            reason = "give state_file or state_dir, not both"
            raise InvalidActionError("state_file", reason)
        if initial is not None and default is not None:
            raise InvalidActionError("default", "give initial or default, not both")
        if backend not in ("asyncio", "trio"):
            reason = f"must be 'asyncio' or 'trio' (got {short_repr(backend, 60)})"
            raise InvalidActionError("backend", reason)
        trio = sys.modules.get("trio")
        if backend == "trio" and trio is not None and trio.lowlevel.in_trio_task():
            reason = (
                "a Store cannot start a trio loop inside a running trio task "
                "(its calls would block that loop); use open_state there, or "
                "backend='asyncio'"
            )
            raise InvalidActionError("backend", reason)
        start = own_json(default if initial is None else initial, "initial")
        self._file = (
            None if state_file is None else absolute_path("state_file", state_file)
        )
        self._serializer: Serializer = serializer or JsonSerializer()
        self._autosave = bool(autosave) and self._file is not None
        self._save_lock = threading.Lock()
        self._txn_lock = threading.Lock()
        self._runners = []
        self._saved_revision = 0  # the revision the file holds (loaded or saved)
        self._seen: tuple[int, int, int] | None = None  # the file as we left it
        if self._file is not None:
            start, self._seen = load_state_file(
                self._file, self._serializer, start, sliced=RUNNING.any()
            )
        self._portal_cm = start_blocking_portal(backend)
        self._portal: BlockingPortal = self._portal_cm.__enter__()
        try:
            self._state_cm = self._portal.wrap_async_context_manager(
                open_state(
                    Owned(start),  # checked and copied above: not copied again
                    state_dir=state_dir,
                    durability=durability,
                    snapshot_every=snapshot_every,
                    keep_snapshots=keep_snapshots,
                    snapshot_interval=snapshot_interval,
                    freeze_gc=freeze_gc,
                )
            )
            self._state: StateHandle = self._state_cm.__enter__()
            # Reads and writes go through this: one hand-off, no task each.
            self._caller: LoopCaller = self._portal.call(LoopCaller.here)
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StateClosedError("the Store was closed")

    def _call(self, fn: Callable[..., Any], *args: object) -> Any:
        """Run *fn* (async or not) in a task on the actor's loop and wait for it.

        Through the portal: for what must await. Closed: a typed error.
        """
        self._check_open()
        try:
            return self._portal.call(fn, *args)
        except RuntimeError:
            if self._closed:  # closed by another thread meanwhile
                raise StateClosedError("the Store was closed") from None
            raise

    def _send(self, action: Action) -> None:
        """Have the actor apply *action*; block until it is (or fails).

        The request enters the actor's mailbox like an async sender's, with a
        signal this thread blocks on (see ``_handoff``): one hand-off to the
        loop and one back, no task per call.
        """
        self._check_open()
        state = self._state
        signal = ThreadSignal()
        request = state._request(action, None, signal)
        self._caller.submit(functools.partial(state._put_from_thread, request))
        signal.block(self._caller.running)
        state._answer(request)

    def _on_loop(self, fn: Callable[..., Any], *args: object) -> Any:
        """Run plain *fn* on the actor's loop (one hand-off); closed: a typed error."""
        self._check_open()
        return self._caller.call(fn, *args)

    def _read_at(
        self,
        path: Segments,
        default: JSON,
        in_child: Callable[[JSON], bytes] | None,
    ) -> tuple[int, bool, JSON | _fork.ForkedBody]:
        """The revision, whether it is committed, and the value at *path* (on the loop).

        The value is a private copy, or a forked child that encodes it with
        *in_child* (a large value: see ``_large_reads.read_at``).

        Raises:
            DurabilityError: The journal failed; the state must be reopened.
        """
        tree = self._live_tree()
        persister = self._state._core.persister
        committed = persister is None or persister.durable_revision >= tree.revision
        return tree.revision, committed, read_at(tree, path, default, in_child)

    def _live_tree(self) -> Tree:
        """The state's tree, to read on the loop (as ``get_nowait`` reads it).

        Raises:
            DurabilityError: The journal failed; the state must be reopened.
        """
        core = self._state._core
        if core.failed is not None:
            raise core.failed
        return core.tree

    # -- reading ------------------------------------------------------------

    def get(self, path: PathLike = "", default: JSON = None) -> JSON:
        """Return a copy of the value at *path*, or *default* when missing.

        Inside a :meth:`transaction` of this thread, it sees that
        transaction's own writes. A large value (the whole tree, ``""``, or
        any part of it) whose copy would stop the state longer than a fork
        of the process does is encoded by a forked child and rebuilt a frame
        at a time, so that other threads' writes go on meanwhile; the copy
        is the value at one instant (``docs/persistence.md``). On a
        persisted Store it returns once what it read is committed.
        """
        scratch = self._scratch()
        if scratch is not None:
            return scratch.read(path, default)
        at = parse_path(path)
        revision, committed, got = self._on_loop(
            self._read_at, at, default, encode_frames
        )
        if isinstance(got, _fork.ForkedBody):  # a large value
            revision, got = self._collect(got, revision, at, default)
            committed = self._state._core.persister is None
        if not committed:  # a persisted write in flight: wait for its commit
            self._call(self._state.wait_durable, revision)
        return cast("JSON", got)

    def _collect(
        self, child: _fork.ForkedBody, revision: int, at: Segments, default: JSON
    ) -> tuple[int, JSON]:
        """The value *child* encodes: read here, rebuilt a frame per call on the loop.

        As ``collect_value`` does for a task, but driven from this thread,
        which waits (GIL free) while the loop decodes a frame: decoding them
        one after another in a task of the loop, or in this thread, the two
        threads fight for the GIL, and the other threads' calls wait up to a
        switch interval (5 ms) at every hand-off (300-400 ms for one ``set``
        beside a ``get("")`` of a million leaves, against 57-86 ms here).
        """
        try:
            data = child.read(_large_reads.READ_TIMEOUT)
        except OSError as exc:
            _large_reads.child_failed(exc)
            revision, _, value = self._on_loop(self._read_at, at, default, None)
            return revision, cast("JSON", value)
        rebuild = Rebuild(self._state._core.freezer.freeze)
        for frame in rebuild.frames(data):
            self._on_loop(rebuild.feed, frame)
        return revision, cast("JSON", rebuild.root)

    def get_state(self) -> JSON:
        """Return a deep copy of the whole tree (as ``get("")``: see :meth:`get`)."""
        return self.get("")

    @property
    def revision(self) -> int:
        """The current revision."""
        return self._state.revision

    # -- writing ------------------------------------------------------------

    def set(self, path: PathLike, value: object) -> bool:
        """Write *value* at *path*; False (nothing changed) when it cannot be applied.

        Raises:
            InvalidPathError, InvalidValueError: Bad input, before anything runs.
        """
        return self._write(Set(path, value))

    def delete(self, path: PathLike) -> bool:
        """Remove *path*; False when it was not there (or cannot be removed)."""
        return self._write(Delete(path, missing_ok=False))

    def _write(self, action: Set | Delete) -> bool:
        scratch = self._scratch()
        if scratch is not None:
            return self._stage(scratch, action)
        try:
            self._send(action)
        except ActionRejectedError:
            return False
        if self._autosave:
            self.save()
        return True

    def save(
        self, path: str | os.PathLike[str] | None = None, *, force: bool = False
    ) -> str:
        """Write the whole tree to *path* (default: ``state_file``) atomically.

        Temp file in the same directory, fsync, ``os.replace``, fsync of the
        directory: after a crash the file is the old or the new one, whole.
        Returns the path written. The file holds the tree at one instant; a
        tree of more than 2,000 values is encoded by a forked child (with
        the built-in serializers), so that other threads' writes go on
        meanwhile. Saves of one Store run one at a time.

        The ``state_file`` is never overwritten behind another writer's back:
        if it changed since this Store loaded or last saved it (another Store
        or process wrote it), the save is refused with
        :class:`~stateward.StateFileChangedError` and the file is left as it
        is; *force* overwrites it anyway.

        Raises:
            InvalidActionError: No *path* and no ``state_file``.
            StateFileChangedError: Another writer changed the file.
            OSError: The file could not be written; the old one is intact.
        """
        target = self._file if path is None else absolute_path("path", path)
        if target is None:
            raise InvalidActionError("path", "this Store has no state_file")
        own = target == self._file
        # Read under the lock: saves reach the file in revision order, so an
        # older tree is never written over a newer one.
        with self._save_lock:
            dumps = self._serializer.dumps
            # The built-in serializers run only their own code: safe in a
            # forked child. Another one might take a lock held at the fork.
            fork_safe = type(self._serializer) in (JsonSerializer, PickleSerializer)
            revision, _, got = self._on_loop(
                self._read_at, (), None, dumps if fork_safe else None
            )
            try:
                if own and revision < self._saved_revision:
                    return target  # a newer tree is already there
                if own and not force:
                    self._check_unchanged(target)
                if isinstance(got, _fork.ForkedBody):
                    try:
                        data = got.read(_large_reads.READ_TIMEOUT)
                    except OSError as exc:
                        # The tree of *revision* is gone from here: the one of
                        # now, copied on the loop as it was before forks.
                        _large_reads.child_failed(exc)
                        revision, _, got = self._on_loop(self._read_at, (), None, None)
                        data = dumps(got)
                else:
                    data = dumps(got)
            finally:
                if isinstance(got, _fork.ForkedBody):
                    got.abandon()  # (nothing to do once read)
            Files().write_atomic(target, data)
            if own:
                self._saved_revision = revision
                self._seen = file_identity(os.stat(target))
        return target

    def _check_unchanged(self, target: str) -> None:
        try:
            now: tuple[int, int, int] | None = file_identity(os.stat(target))
        except FileNotFoundError:
            now = None
        if now is not None and now != self._seen:
            raise StateFileChangedError(target)

    def close(self) -> None:
        """Save what changed (with a ``state_file``), stop the actor and its thread.

        The tree is then freed (its memory goes back now, not when this
        object goes); a closed Store reads nothing more.

        Writes the file only if the tree changed since it was loaded or last
        saved: an idle Store never overwrites another writer's file. If the
        file changed meanwhile, :class:`~stateward.StateFileChangedError` is
        raised after the Store is closed (save elsewhere first to keep your
        changes: ``store.save("other.json")``). Idempotent.
        """
        if self._closed:
            return
        try:
            if self._file is not None and self._dirty():
                self.save()
        finally:
            self._closed = True
            try:
                self._state_cm.__exit__(None, None, None)
            finally:
                self._portal_cm.__exit__(None, None, None)
                for runner in self._runners:  # the events handed to them first
                    runner.stop()
                self._runners.clear()
                self._let_go()

    def _let_go(self) -> None:
        """Free the stopped state's tree now: a closed Store reads nothing more.

        Its memory then goes back at once, however long this object lives:
        beside another running state of the process, by the background
        thread that frees stopped states' trees a slice at a time
        (:func:`free_in_background`); freed by one call, a million leaves
        would stop every other thread for about 65 ms.
        """
        free_in_background([self._state._core.tree.take_root()])

    def _dirty(self) -> bool:
        """Whether the tree changed since the file was loaded or saved."""
        return self._state.revision > self._saved_revision or not os.path.lexists(
            cast("str", self._file)
        )

    def __enter__(self) -> Store:
        """Return the store itself."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the store."""
        self.close()

    def __repr__(self) -> str:
        where = self._file or "memory"
        closed = " closed" if self._closed else ""
        return f"<Store {where} rev={self._state.revision}{closed}>"
