"""The state actor: one task owns the tree, applies actions, routes events.

Start it in a task group you own::

    state = await tg.start(StateActor(initial={...}).run)

or let :func:`open_state` own one::

    async with open_state(initial={...}) as state:
        ...

Both give a :class:`StateHandle`. Every action goes through one bounded
mailbox and is applied by one task, in arrival order; each action that changes
something gets the next revision; the events of an action are routed to the
matching subscribers' own mailboxes before the next action is applied, so
every subscriber sees changes in revision order.
"""

from __future__ import annotations

import functools
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, final

import anyio
import attrs

from .._checks import MAX_MAILBOX, bool_validator, int_validator
from .._errors import InvalidActionError, StateDirectoryError, short_repr
from .._json import JSON, own_json
from ..paths import format_path, parse_pattern
from ..tree import Tree
from ._ack import Receipt
from ._core import _Core
from ._gc_freeze import Freezer, freezes_in_memory
from ._history import History
from ._log import ActionLog, Redactor
from ._persister import Persister
from ._reaper import free_in_background
from ._running import RUNNING
from .handle import StateHandle, StateStatistics, Subscription
from .persistence import (
    Durability,
    PersistenceConfig,
    lock_directory,
    recover,
    unlock_directory,
)

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterator, Callable, Iterable, Iterator

    from anyio.abc import TaskStatus

    from .persistence import RecoveryProgress


__all__ = [
    "Receipt",
    "StateActor",
    "StateHandle",
    "StateStatistics",
    "Subscription",
    "open_state",
]


@final
class Owned:
    """An initial tree already checked and copied (by ``own_json``): taken as it is.

    The :class:`~stateward.Store` checks its initial tree before it starts a
    thread, and loads a ``state_file`` the same way; wrapped in this, the
    tree is not copied a second time by the actor (a second at a million
    leaves). Internal: nothing else may hold the value.
    """

    __slots__ = ("value",)

    def __init__(self, value: JSON) -> None:
        self.value = value


def _own_initial(value: object) -> JSON:
    if value is None:  # (also what run() sets once the tree holds the value)
        return None
    if type(value) is Owned:
        return value.value
    return own_json(value)


def _to_patterns(value: Iterable[str]) -> tuple[str, ...]:
    try:
        if isinstance(value, str | bytes):
            raise TypeError  # (one str is no list of patterns)
        patterns = tuple(value)
    except TypeError:
        reason = f"must be a list of patterns (got {short_repr(value, 60)})"
        raise InvalidActionError("redact", reason) from None
    return tuple(format_path(parse_pattern(p)) for p in patterns)  # bad ones raise


@final
@attrs.define(eq=False)
class StateActor:
    """The actor that owns a state tree; :meth:`run` it in a task group.

    Args:
        initial: The starting tree (any JSON value; ``{}`` when None). It is
            copied once: later changes to your object are not seen, and the
            tree holds the only copy (the actor lets go of it when it starts:
            an actor runs once). With *persistence*, used only when the state
            directory holds no state.
        mailbox_size: How many actions may wait to be applied. Senders beyond
            it wait in :meth:`StateHandle.send` (backpressure).
        persistence: Where and how to keep the state on disk; None keeps it
            in memory only. See :mod:`stateward.actors.persistence`.
        history: How many revisions to remember for ``from_revision`` feeds
            and :meth:`StateHandle.at_revision` (0: none). Memory grows with
            what those revisions wrote.
        action_log: How many actions :meth:`StateHandle.action_log` keeps.
        redact: Patterns of paths whose values never appear in the action log
            (``"users.*.password"``, ``"secrets.**"``).
        freeze_gc: For a state in memory: move the tree out of the garbage
            collector's full collections (:func:`gc.freeze`, process-wide)
            once it is loaded and every 2,000 revisions. None (default):
            from the start if the initial tree is large (about 100,000
            leaves or more), where a full collection would stop everything
            for tens of milliseconds; else from the first full collection
            that lasts over 10 ms while it runs (a tree that grew, a long
            *history*). A persisted state follows its
            ``PersistenceConfig.freeze_gc`` instead. The last state that
            froze calls :func:`gc.unfreeze` when it closes, so that what
            closed states leave is freed.
    """

    initial: JSON = attrs.field(default=None, kw_only=True, converter=_own_initial)
    mailbox_size: int = attrs.field(
        default=64, kw_only=True, validator=int_validator(1, MAX_MAILBOX)
    )
    persistence: PersistenceConfig | None = attrs.field(default=None, kw_only=True)
    history: int = attrs.field(
        default=1000, kw_only=True, validator=int_validator(0, MAX_MAILBOX)
    )
    action_log: int = attrs.field(
        default=100, kw_only=True, validator=int_validator(0, MAX_MAILBOX)
    )
    redact: tuple[str, ...] = attrs.field(
        default=(), kw_only=True, converter=_to_patterns
    )
    freeze_gc: bool | None = attrs.field(
        default=None, kw_only=True, validator=bool_validator(optional=True)
    )
    # open_state raises a handler's KeyboardInterrupt/SystemExit in its own
    # task instead of this one (see Subscriber.run).
    _on_exit: Callable[[], None] | None = attrs.field(
        default=None, init=False, repr=False
    )
    _exit: BaseException | None = attrs.field(default=None, init=False, repr=False)

    async def run(
        self, *, task_status: TaskStatus[StateHandle] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the actor until :meth:`StateHandle.stop` or cancellation.

        Meant for ``await tg.start(actor.run)``, which returns the handle once
        the actor is ready to take actions. The subscriber actors run in a task
        group inside this one, so they never outlive it.

        With persistence, the directory is locked and recovered first (in a
        worker thread): the handle exists only once the state is hydrated.

        Raises:
            StateLockedError: Another state holds the directory.
            CorruptStateError: Recovery found damage it must not skip.
            StateDirectoryError: The directory cannot be created, read or
                written (a full disk, a permission): an :class:`OSError` too.
        """
        config = self.persistence
        lock: int | None = None
        persister: Persister | None = None
        # The converter made a private copy of *initial*: the tree takes it
        # as it is (no second copy), and the actor lets go of it (it runs once).
        initial, self.initial = self.initial, None
        if config is None:
            tree = Tree.adopt(initial)
            freeze = freezes_in_memory(self.freeze_gc, initial)
            del initial  # the tree holds the only copy
        else:
            try:
                lock = await anyio.to_thread.run_sync(
                    lock_directory, config.files, config.state_dir
                )
                # Beside another state of this process, the snapshot is
                # decoded in short calls: one call would hold the GIL, and
                # stop that state's loop, for as long as it takes (0.65 s at
                # a million leaves); alone, in one, at its fastest.
                read = functools.partial(recover, sliced=RUNNING.any())
                try:
                    recovered = await anyio.to_thread.run_sync(read, config, initial)
                    del initial  # recovery adopted it, or read the state from disk
                except BaseException:
                    unlock_directory(lock)
                    raise
            except OSError as exc:  # a full disk, a permission
                raise StateDirectoryError(config.state_dir, exc) from exc
            tree = recovered.tree
            freeze = config.freeze_gc
        freezer = Freezer(freeze, tree.revision)  # (freezes the loaded tree)
        finished: anyio.Event | None = None
        try:
            with _unwrap_exit(), RUNNING.one():
                async with anyio.create_task_group() as tg:
                    log = ActionLog(self.action_log, Redactor(self.redact))
                    core = _Core(
                        tree,
                        tg,
                        self.mailbox_size,
                        History(self.history),
                        log,
                        freezer,
                    )
                    if config is not None:
                        persister = Persister(core, recovered.journal, config)
                        core.persister = persister
                        tg.start_soon(persister.run, name="stateward persistence")
                    finished = core.finished
                    handle = StateHandle._create(core)
                    task_status.started(handle)
                    try:
                        await core.loop()
                    except BaseException as exc:
                        # Cancelled or crashed: whoever still waits must hear of it.
                        core.broken = exc
                        raise
                    finally:
                        core.shut_down()
                    await core.wait_subscribers()
                    tg.cancel_scope.cancel()
        finally:
            if persister is not None:
                persister.close()
            if lock is not None:
                unlock_directory(lock)
            freezer.close()  # (what the stopped state leaves is not kept frozen)
            # Its tree stays readable through the handle; once nothing
            # reaches it, it is freed in slices beside other running states.
            tree.when_gone(free_in_background)
            if finished is not None:
                finished.set()
        if core.exit is not None:
            if self._on_exit is None:
                raise core.exit
            self._exit = core.exit
            self._on_exit()


@contextmanager
def _unwrap_exit() -> Iterator[None]:
    """Let a KeyboardInterrupt or SystemExit out of a task group as itself.

    A handler's Ctrl-C or ``sys.exit()`` stops the actor (see ``Handler``);
    the caller should get that exception, not a group around it.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaf = _exit_in(group)
        if leaf is None:
            raise
        raise leaf from None


def _exit_in(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    for exc in group.exceptions:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _exit_in(exc)
            if found is not None:
                return found
    return None


@asynccontextmanager
async def open_state(
    initial: object = None,
    *,
    mailbox_size: int = 64,
    state_dir: str | os.PathLike[str] | None = None,
    durability: Durability = "fsync",
    snapshot_every: int | None = None,
    keep_snapshots: int = 3,
    snapshot_interval: float | None = None,
    history: int = 1000,
    action_log: int = 100,
    redact: Iterable[str] = (),
    on_recovery_progress: Callable[[RecoveryProgress], object] | None = None,
    freeze_gc: bool | None = None,
) -> AsyncIterator[StateHandle]:
    """Run a state actor for the duration of the ``async with`` block.

    *initial* is any JSON value (``{}`` when None), validated and copied.

    With *state_dir*, the state is persisted there (journal + snapshots; see
    :mod:`stateward.actors.persistence`) and recovered from it when it exists
    (then *initial* is ignored). *durability* is what a send waits for by
    default (``"fsync"``, ``"flush"`` or ``"none"``); a snapshot is written
    every *snapshot_every* revisions (None: every 10,000, but for a big tree
    not before the journal since the last snapshot is as large as that
    snapshot; see :class:`~stateward.PersistenceConfig`), at the first change
    once the last one is *snapshot_interval* seconds old (if given), and at a
    clean exit; the newest *keep_snapshots* are kept.

    The last *history* revisions are remembered for ``from_revision`` feeds
    (:meth:`StateHandle.subscribe`, :meth:`StateHandle.watch`) and
    :meth:`StateHandle.at_revision`; the last *action_log* actions for
    :meth:`StateHandle.action_log`, with the values under the *redact*
    patterns masked. *on_recovery_progress* is called during a long
    recovery (from its worker thread) with a
    :class:`~stateward.actors.persistence.RecoveryProgress`. *freeze_gc*
    has the loaded tree and what is written later frozen out of the garbage
    collector's full collections (:func:`gc.freeze`, which is process-wide;
    see :class:`~stateward.PersistenceConfig`); False leaves the collector
    alone. None (default): True with *state_dir*; in memory, if *initial*
    is large (about 100,000 leaves or more), or once a full collection
    lasts over 10 ms while it runs.

    On a normal exit it stops gracefully (:meth:`StateHandle.stop`); on an
    exception the actor and its subscribers are cancelled and the exception
    propagates.
    """
    persistence = (
        None
        if state_dir is None
        else PersistenceConfig(
            state_dir,
            durability,
            snapshot_every,
            keep_snapshots,
            snapshot_interval,
            on_progress=on_recovery_progress,
            freeze_gc=freeze_gc is not False,
        )
    )
    actor = StateActor(
        initial=initial,
        mailbox_size=mailbox_size,
        persistence=persistence,
        history=history,
        action_log=action_log,
        redact=_to_patterns(redact),
        freeze_gc=freeze_gc if persistence is None else None,
    )
    del initial  # the actor has its own copy: do not keep the caller's alive
    error: BaseException | None = None
    with _unwrap_exit():
        async with anyio.create_task_group() as tg:
            actor._on_exit = tg.cancel_scope.cancel
            try:
                handle: StateHandle = await tg.start(actor.run)
            except Exception as exc:  # noqa: BLE001 - re-raised below, never swallowed
                # Startup failed (the lock, recovery): raise it as it is, unwrapped.
                error = exc
            if error is None:
                try:
                    yield handle
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    # Re-raised below, outside the task group, so that the caller
                    # gets its own exception back, not wrapped in an ExceptionGroup.
                    error = exc
                    tg.cancel_scope.cancel()
                else:
                    await handle.stop()
    if actor._exit is not None:
        raise actor._exit  # here, in the caller's task (see Subscriber.run)
    if error is not None:
        raise error
