"""Checkpoints: the tree and your own objects, saved together into one directory.

The pamiq-core pattern: any object with ``save_state(path)`` and
``load_state(path)`` (a model, a replay buffer, an optimizer) is registered
under a unique name; a checkpoint saves the state tree and every registered
object into one new timestamped directory::

    checkpoints/
      20261124T101530.123456Z/
        MANIFEST.json        format, revision, creation time, object names
        state.json           the state tree at that revision
        objects/model        whatever model.save_state(path) wrote there

A checkpoint is complete or absent: it is written under a hidden temporary
name, every file and directory in it is fsynced, and only then is it renamed
into place (and the parent directory fsynced). An existing checkpoint is never
overwritten. Retention keeps the newest ``keep`` checkpoints once a new one is
complete.

All file work runs in a worker thread, never on the event loop
(:mod:`._checkpoint_disk`; the layout and the manifest are
:mod:`._checkpoint_files`).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, cast, final

import anyio

from .._checks import absolute_path, check_int, check_seconds
from .._errors import (
    CheckpointError,
    DuplicateNameError,
    InvalidActionError,
    describe_exception,
    short_repr,
)
from . import _checkpoint_disk as _disk
from ._checkpoint_files import (
    _STRICT,
    OBJECTS,
    Checkpointable,
    CheckpointInfo,
    _check_name,
)
from ._files import Files
from ._large_reads import read_at
from .persistence import _fork
from .retention import KeepNewest

if TYPE_CHECKING:
    import builtins

    from .._json import JSON
    from .retention import RetentionPolicy
    from .state import StateHandle

__all__ = ["CheckpointInfo", "Checkpointable", "Checkpoints"]

logger = logging.getLogger(__name__)


@final
class Checkpoints:
    """Saves the state tree and registered objects into timestamped directories.

    Create one per checkpoint directory, on the event loop that runs the
    state. ``register``/``unregister`` are plain calls; ``save`` and ``load``
    are serialized by a lock (one at a time); ``run`` saves every *interval*
    seconds, as a task in your nursery.

    Consistency: the tree is read at one revision (never half an action) and
    saved only once that revision is durable. Your objects are saved one
    after another after it; if they must agree with the tree to the byte,
    pause what changes them while ``save`` runs.
    """

    def __init__(
        self,
        state: StateHandle,
        directory: str | os.PathLike[str],
        *,
        keep: int | None = None,
        retention: RetentionPolicy | None = None,
    ) -> None:
        """Save into *directory* (created 0700 now, if missing).

        *keep* keeps the newest *keep* checkpoints (``KeepNewest(keep)``);
        *retention* is any policy of your own (see
        :mod:`stateward.actors.retention`); neither keeps every checkpoint.
        The policy runs after every save and on :meth:`retain`.

        Raises:
            InvalidActionError: *directory* is not a path (or one the
                filesystem cannot encode), or *keep*/*retention* is bad.
        """
        check_int("keep", keep, 1, optional=True)
        if keep is not None and retention is not None:
            raise InvalidActionError("retention", "give keep or retention, not both")
        if retention is not None and not callable(cast("object", retention)):
            got = short_repr(retention, 60)
            reason = f"must be a callable policy(checkpoints) (got {got})"
            raise InvalidActionError("retention", reason)
        self._state = state
        # (absolute now: a later os.chdir must not move the checkpoints)
        self._directory = Path(absolute_path("directory", directory))
        Files().makedirs(str(self._directory))  # users check that it exists
        self._policy: RetentionPolicy | None = (
            KeepNewest(keep) if keep is not None else retention
        )
        self._objects: dict[str, Checkpointable] = {}
        self._lock = anyio.Lock()
        self._files = Files()
        self.saved = 0
        """Checkpoints saved by this object."""
        self.failed = 0
        """Periodic saves that failed (see :meth:`run`)."""
        self.last_error: BaseException | None = None
        """The error of the last failed periodic save, if any."""

    @property
    def directory(self) -> Path:
        """Where the checkpoints live."""
        return self._directory

    @property
    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._objects)

    def register(self, name: str, obj: Checkpointable) -> None:
        """Save and load *obj* under *name* from now on.

        Raises:
            DuplicateNameError: *name* is registered already.
            InvalidActionError: *name* is not a safe file name, or *obj* has
                no ``save_state``/``load_state``.
        """
        _check_name(name, "name")
        if not isinstance(cast("object", obj), Checkpointable):
            kind = type(obj).__qualname__  # (its repr is its own: it may raise)
            reason = f"needs save_state(path) and load_state(path) (got a {kind})"
            raise InvalidActionError("obj", reason)
        if name in self._objects:
            raise DuplicateNameError(name, "checkpointed object")
        self._objects[name] = obj

    def unregister(self, name: str) -> None:
        """Stop saving *name*; raises ``KeyError`` if it is not registered."""
        try:
            del self._objects[name]
        except TypeError:  # unhashable: not registered either
            raise KeyError(name) from None

    def list(self) -> list[CheckpointInfo]:
        """Return the complete checkpoints, oldest first (blocking, but brief)."""
        return _disk.list_checkpoints(self._directory)

    async def save(self, *, name: str | None = None) -> CheckpointInfo:
        """Save the tree and every registered object into a new directory.

        The directory is named for the current UTC time unless *name* is
        given. Returns once the checkpoint is complete and durable; then the
        retention policy (``keep``/``retention``) runs.

        Raises:
            FileExistsError: A checkpoint of that name exists (never overwritten).
            CheckpointError: An object's ``save_state`` raised, or the forked
                child serialising the tree failed (or hung, and was killed
                after ``CHILD_TIMEOUT`` seconds); nothing was left. (A new
                process rebuilding a large persisted state's tree that
                fails is logged, and the tree forked instead.)
            DurabilityError: The state's journal failed.
        """
        if name is not None:
            _check_name(name, "name")
        async with self._lock:
            core = self._state._core
            if core.failed is not None:
                raise core.failed
            revision = self._state.revision
            tree: JSON | bytes | None = None
            persister = core.persister
            if persister is not None and persister.snapshots.rebuilds():
                # A large persisted state: once the journal holds this
                # revision, a new process rebuilds the tree at it from the
                # files and encodes it, and the state does not even pause
                # for a fork (docs/persistence.md). If that fails, the way
                # below, at the revision of then.
                await self._state.wait_durable(revision)
                with contextlib.suppress(OSError):  # (logged)
                    tree = await persister.snapshots.rebuild(
                        revision, None, _fork.CHILD_TIMEOUT, checkpoint=True
                    )
            if tree is None:
                if core.failed is not None:
                    raise core.failed
                # One revision, no yield in between: a large tree is
                # serialised by a forked child (the actor goes on), a small
                # one copied here (quicker than a fork).
                revision = self._state.revision
                got = read_at(core.tree, (), None, _STRICT.dumps)
                if isinstance(got, _fork.ForkedBody):
                    try:
                        tree = await got.collect(timeout=_fork.CHILD_TIMEOUT)
                    except OSError as exc:  # it failed, or hung and was killed
                        reason = f"the tree could not be serialised: {exc}"
                        raise CheckpointError(str(self._directory), reason) from exc
                else:
                    tree = got
            await self._state.wait_durable(revision)
            objects = dict(self._objects)
            now = datetime.datetime.now(datetime.UTC)
            dirname = name or now.strftime("%Y%m%dT%H%M%S.%fZ")
            info = await anyio.to_thread.run_sync(
                _disk.save,
                self._directory,
                self._files,
                dirname,
                revision,
                now.isoformat(),
                tree,
                objects,
                self._policy,
            )
            self.saved += 1
            return info

    async def load(self, path: str | os.PathLike[str] | None = None) -> CheckpointInfo:
        """Restore the tree and every registered object from a checkpoint.

        *path* is a checkpoint directory, or the name of one in
        :attr:`directory`; None takes the newest. Everything is checked
        before anything changes (the manifest, the tree, an entry for every
        registered object); then each object's ``load_state`` runs, in
        registration order, and last the tree is set whole with one action
        (its events reach your subscribers), even if it equals the state's:
        the revision goes up by one. Objects in the checkpoint that are not
        registered are ignored. An object that wrote nothing when it was
        saved gets a path that does not exist.

        The tree is read, checked and (persisted) encoded in a worker thread
        in short calls, and the state takes it without a copy: the event
        loop goes on meanwhile (docs/persistence.md). Concurrency: one load
        or save at a time per :class:`Checkpoints`; other tasks may send
        throughout, and an action sent during the load applies before or
        after the whole tree, never inside it.

        Raises:
            FileNotFoundError: No such checkpoint (or none at all).
            InvalidActionError: *path* is not a path.
            CheckpointError: It is incomplete or damaged, or lacks a
                registered object; nothing was changed. Or an object's
                ``load_state`` raised: the error's ``restored`` names the
                objects restored before it, and the tree was not changed.
        """
        async with self._lock:
            if path is None:
                listed = await anyio.to_thread.run_sync(self.list)
                if not listed:
                    msg = "no checkpoint in this directory"
                    raise FileNotFoundError(errno.ENOENT, msg, str(self._directory))
                where = listed[-1].path
            else:
                absolute_path("path", path)  # (a path: the name may be relative)
                where = Path(os.fspath(path))
                if not where.is_absolute() and not where.exists():
                    where = self._directory / where
            objects = dict(self._objects)
            core = self._state._core
            persisted = core.persister is not None
            info, action, copy, encoded = await anyio.to_thread.run_sync(
                _disk.read_to_load, where, persisted
            )
            missing = [n for n in objects if n not in info.objects]
            if missing:
                reason = f"holds no state for {', '.join(map(repr, missing))}"
                raise CheckpointError(str(where), reason)
            restored: list[str] = []
            for obj_name, obj in objects.items():
                target = where / OBJECTS / obj_name
                failure = await anyio.to_thread.run_sync(_disk.load_one, obj, target)
                if failure is not None:
                    reason = (
                        f"load_state of {obj_name!r} raised "
                        f"{describe_exception(failure)}; restored "
                        f"before it: {restored}; the state tree was not changed"
                    )
                    raise CheckpointError(
                        str(where), reason, restored=tuple(restored)
                    ) from failure
                restored.append(obj_name)
            # The tree takes the checked copy as it is, and the journal its
            # encoding: the event loop does neither (docs/persistence.md).
            with core.taking_whole(action.value, copy, encoded):
                await self._state.send(action)
            return info

    async def run(
        self,
        interval: float,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Save a checkpoint every *interval* seconds, until cancelled.

        For ``nursery.start``/``tg.start``. A failed save is logged, counted
        in :attr:`failed` and kept in :attr:`last_error`; the loop goes on
        (the checkpoints already saved stay).
        """
        check_seconds("interval", interval, positive=True)
        task_status.started()
        while True:
            await anyio.sleep(interval)
            try:
                await self.save()
            except Exception as exc:  # counted and logged; the loop goes on
                self.failed += 1
                self.last_error = exc
                logger.exception("periodic checkpoint in %s failed", self._directory)

    async def retain(
        self, policy: RetentionPolicy | None = None
    ) -> builtins.list[CheckpointInfo]:
        """Apply *policy* (default: this object's) now; return what was removed.

        Runs in a worker thread, holding the directory's lock, so it never
        removes a checkpoint another saver is writing. Without any policy it
        removes nothing.
        """
        chosen = policy or self._policy
        if chosen is None:
            await anyio.lowlevel.checkpoint()
            return []
        async with self._lock:
            return await anyio.to_thread.run_sync(
                _disk.retain, self._directory, self._files, chosen
            )
