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

import contextlib
import logging
import os
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast, final, overload

import anyio
import attrs

from .._checks import check_int, check_seconds, int_validator
from .._errors import (
    ActionRejectedError,
    CompactedError,
    CorruptStateError,
    DuplicateNameError,
    DurabilityError,
    InvalidActionError,
    RevisionMismatchError,
    StateBrokenError,
    StateClosedError,
    StatewardError,
)
from .._json import JSON, copy_json, own_json
from ..messages.acks import AckReport, ResultCode
from ..messages.actions import Action, Set, Transaction
from ..messages.events import Progress, Resync, StateChanged, _state_changed
from ..paths import PathLike, format_path, parse_path, parse_pattern
from ..tree import MISSING, Tree, unchanged_below
from ._ack import AckCollector
from ._derive import Derivation, Derivations
from ._history import Entry, History, undo
from ._log import ActionLog, LoggedAction, Redactor
from ._mailbox import Mailbox, Signal, current_backend
from ._persister import WAIT_FOR, Commit, Persister
from ._track import Reaction, Reactions, Reader, first_run
from .persistence import (
    Durability,
    FeedEntry,
    PersistenceConfig,
    encode_changes,
    encode_record,
    lock_directory,
    oldest_snapshot,
    recover,
    replay_files,
    unlock_directory,
)
from .subscriber import Handler, Overflow, Subscriber, SubscriberStatistics, _Delivery

if TYPE_CHECKING:
    from collections.abc import (
        AsyncGenerator,
        AsyncIterator,
        Awaitable,
        Callable,
        Iterable,
    )

    from anyio.abc import TaskGroup, TaskStatus

    from ..paths import PatternTrie
    from ..tree import Change

__all__ = [
    "Receipt",
    "StateActor",
    "StateHandle",
    "StateStatistics",
    "Subscription",
    "open_state",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_BATCH: Final = 256  # most actions applied between two deliveries to subscribers
_EMPTY_REPORT: Final = AckReport(ResultCode.ALL_SUBS_SUCCESS, (), ())


class _NoPublicConstructor(type):
    """Objects that users only receive: ``Cls()`` raises, ``Cls._create()`` works."""

    def __call__(cls, *args: object, **kwargs: object) -> None:
        msg = f"{cls.__module__}.{cls.__qualname__} has no public constructor"
        raise TypeError(msg)

    def _create(cls: type[_T], *args: Any, **kwargs: Any) -> _T:
        # What type.__call__ does for these plain classes, at half the cost
        # (a Receipt is made per action).
        obj = cls.__new__(cls)
        obj.__init__(*args, **kwargs)  # type: ignore[misc]
        return obj


def _to_patterns(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        reason = f"must be a list of patterns, not one str (got {value!r})"
        raise InvalidActionError("redact", reason)
    return tuple(format_path(parse_pattern(p)) for p in value)  # bad ones raise here


@final
@attrs.define(eq=False)
class StateActor:
    """The actor that owns a state tree; :meth:`run` it in a task group.

    Args:
        initial: The starting tree (any JSON value; ``{}`` when None). It is
            copied: later changes to your object are not seen. With
            *persistence*, used only when the state directory holds no state.
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
    """

    initial: JSON = attrs.field(default=None, kw_only=True, converter=own_json)
    mailbox_size: int = attrs.field(
        default=64, kw_only=True, validator=int_validator(1)
    )
    persistence: PersistenceConfig | None = attrs.field(default=None, kw_only=True)
    history: int = attrs.field(default=1000, kw_only=True, validator=int_validator(0))
    action_log: int = attrs.field(default=100, kw_only=True, validator=int_validator(0))
    redact: tuple[str, ...] = attrs.field(
        default=(), kw_only=True, converter=_to_patterns
    )

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
            OSError: The directory cannot be read or written.
        """
        config = self.persistence
        lock: int | None = None
        persister: Persister | None = None
        if config is None:
            tree = Tree(self.initial)
        else:
            lock = await anyio.to_thread.run_sync(
                lock_directory, config.files, config.state_dir
            )
            try:
                recovered = await anyio.to_thread.run_sync(
                    recover, config, self.initial
                )
            except BaseException:
                unlock_directory(lock)
                raise
            tree = recovered.tree
        finished: anyio.Event | None = None
        try:
            async with anyio.create_task_group() as tg:
                log = ActionLog(self.action_log, Redactor(self.redact))
                core = _Core(tree, tg, self.mailbox_size, History(self.history), log)
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
                persister.journal.close()
            if lock is not None:
                unlock_directory(lock)
            if finished is not None:
                finished.set()


class _Replayed:
    """The identity of an action rebuilt from the journal (for routing)."""

    __slots__ = ("id", "payload", "source")

    def __init__(self, action_id: str, source: str | None, payload: JSON) -> None:
        self.id = action_id
        self.source = source
        self.payload = payload


class _Register:
    """An internal message: add a derivation, or remove the one of *dest*."""

    __slots__ = ("derivation", "dest", "id")

    def __init__(self, derivation: Derivation | None, dest: str = "") -> None:
        self.derivation = derivation
        self.dest = dest
        self.id = "derive"


class _Request:
    """One action in the mailbox, and the slot its sender waits on."""

    __slots__ = ("action", "done", "error", "receipt", "wait")

    def __init__(
        self, action: Action | _Register | None, done: Signal, wait: int = 0
    ) -> None:
        self.action = action  # None: the stop marker
        self.done = done  # set once answered: receipt or error
        self.error: BaseException | None = None
        self.receipt: Receipt | None = None
        self.wait = wait  # with persistence: 0 none, 1 written, 2 fsynced


class _Core:
    """The actor's state, shared by its task and the handle (one event loop)."""

    def __init__(
        self,
        tree: Tree,
        tg: TaskGroup,
        mailbox_size: int,
        history: History,
        log: ActionLog,
    ) -> None:
        from ..paths import PatternTrie

        self.backend = backend = current_backend()
        self.new_event = backend.new_event
        self.new_signal = backend.new_signal
        self.mailbox: Mailbox[_Request] = Mailbox(mailbox_size, backend.new_signal)
        self.tree = tree
        tree.created = [] if history.size else None
        self.history = history
        self.derivations = Derivations()
        self.reactions = Reactions()
        self.log = log
        self.released = tree.revision  # every delivery up to it is in a mailbox
        self.tg = tg
        self.trie: PatternTrie[Subscriber] = PatternTrie()
        self.subscribers: dict[str, Subscriber] = {}
        self.stoppers = 0  # subscribers with stop_bubbling
        self.outbox: list[tuple[Subscriber, _Delivery]] = []
        self.batch: list[_Request] = []  # taken from the mailbox, maybe not answered
        self.closed = False
        self.broken: BaseException | None = None
        self.persister: Persister | None = None
        self.failed: DurabilityError | None = None  # fail-stop after a disk error
        self.records: list[bytes] = []  # journal records of the current batch
        self.stop_timeout: float | None = 5.0
        self.finished = anyio.Event()
        self.applied = 0
        self.rejected = 0
        self.unnamed = 0

    async def loop(self) -> None:
        mailbox = self.mailbox
        settle = self.backend.settle
        while True:
            await mailbox.wait()
            if settle is not None:
                # Let cancellations already under way reach their senders, so
                # that a send cancelled before we take it is skipped (_mailbox).
                await settle()
            self.batch = batch = mailbox.take(_BATCH)
            stop_at = -1
            persister = self.persister
            if persister is None:
                for i, request in enumerate(batch):
                    if request.action is None:
                        stop_at = i
                        break
                    if request.done.abandoned():
                        continue  # its sender was cancelled before we got here
                    self.process(request)
                    # Answer at once (a crash later in the batch must not turn
                    # an applied action into a refused one). Senders run only
                    # after the next checkpoint, and learn the result before the
                    # subscribers get their events: read-your-writes holds
                    # already, and a slow subscriber on BLOCK delays the next
                    # actions, not this receipt.
                    request.done.set()
                await self.flush()
                self.released = self.tree.revision
            else:
                stop_at = await self.process_persisted(persister, batch)
            if stop_at >= 0:
                stopped = StateClosedError("the state actor was stopped")
                for request in batch[stop_at + 1 :]:
                    self.refuse(request, stopped)
                if persister is not None:
                    await persister.finish()
                batch[stop_at].done.set()
                return

    async def process_persisted(
        self, persister: Persister, batch: list[_Request]
    ) -> int:
        """Apply *batch* and hand its records, waiters and events to the persister.

        Senders that wait for the disk are answered by the persister after
        their group commit; so are the events of the whole batch (R2).
        """
        stop_at = -1
        waiting: list[_Request] = []
        for i, request in enumerate(batch):
            if request.action is None:
                stop_at = i
                break
            if request.done.abandoned():
                continue  # its sender was cancelled before we got here
            if self.failed is not None:
                self.refuse(request, self.failed)
                continue
            self.process(request)
            if request.error is None and request.wait:
                waiting.append(request)
            else:
                request.done.set()
        if self.records or waiting or self.outbox:
            records, self.records = self.records, []
            outbox, self.outbox = self.outbox, []
            await persister.submit(Commit(records, waiting, outbox, self.tree.revision))
        if persister.snapshot_due(self.tree.revision):
            await persister.submit_snapshot(self.tree)
        return stop_at

    def process(self, request: _Request) -> None:
        # The hot path: it runs once per action, so it reads plain attributes
        # (dict and set truthiness) rather than calling __len__ methods.
        message = request.action
        assert message is not None
        tree = self.tree
        derivations = self.derivations
        if type(message) is _Register:
            registered = self.register(request, message)
            if registered is None:
                return
            action: Action = registered
            guard = False
        else:
            action = cast("Action", message)
            guard = bool(derivations.by_dest)
        try:
            if guard:
                derivations.guard(action)
            changes = tree.apply(action)
        except ActionRejectedError as exc:
            self.rejected += 1
            request.error = exc
            self.log.record(tree.revision, action, None, exc, ())
            if tree.created:
                tree.created.clear()  # rolled back
            return
        self.applied += 1
        revision = tree.revision
        if not changes:
            if tree.created:  # (an action that changes nothing creates nothing)
                tree.created.clear()
            self.log.record(revision, action, changes, None, ())
            request.receipt = Receipt._create(revision, False, (), action.id, None)
            return
        errors: tuple[str, ...] = ()
        if derivations.by_dest:
            # Same revision, before any event leaves: glitch-free.
            errors = tuple(derivations.run(tree, changes))
        if self.reactions.active:
            self.reactions.notify(changes)
        self.log.record(revision, action, changes, None, errors)
        history = self.history
        if history.size:
            # tree.created collects the dicts this action made on its way; a
            # new list only when it made some (most actions make none).
            created = tree.created
            if created:
                tree.created = []
                history.record(Entry(revision, action, changes, created))
            else:
                history.record(Entry(revision, action, changes, ()))
        if self.persister is not None:
            payload = encode_changes(changes, action)
            synced = self.persister.synced_revision
            self.records.append(encode_record(revision, payload, synced))
        routed = self.route(action, revision, changes) if self.subscribers else None
        if not routed:
            request.receipt = Receipt._create(
                revision, True, (), action.id, None, errors
            )
            return
        names = [sub.name for sub in routed]
        collector = AckCollector(revision, names, self.new_event)
        outbox = self.outbox
        for sub, events in routed.items():
            outbox.append((sub, _Delivery(revision, tuple(events), collector)))
        request.receipt = Receipt._create(
            revision, True, tuple(names), action.id, collector, errors
        )

    def register(self, request: _Request, reg: _Register) -> Action | None:
        """Add or remove a derivation; return the action that writes its value."""
        derivations = self.derivations
        d = reg.derivation
        if d is None:
            derivations.remove(reg.dest)
            request.receipt = Receipt._create(
                self.tree.revision, False, (), "underive", None
            )
            return None
        try:
            derivations.add(d)
        except StatewardError as exc:
            request.error = exc
            return None
        try:
            value = d.compute(self.tree)
        except Exception as exc:  # noqa: BLE001 - refused, reported to the caller
            derivations.remove(d.dest)
            reason = f"the derivation raised {type(exc).__name__}: {exc}"
            request.error = ActionRejectedError(d.dest, reason)
            return None
        return Set(d.dest, value, source="derive")

    def route(
        self,
        action: Action,
        revision: int,
        changes: list[Change],
        only: Subscriber | None = None,
    ) -> dict[Subscriber, list[StateChanged]]:
        routed: dict[Subscriber, list[StateChanged]] = {}
        match = self.trie.match
        for change in changes:
            matches = match(change.path)
            if not matches:
                continue
            stop_depth = -1
            if self.stoppers:
                # A stopper that got this change from below (depth < len(path))
                # hides it from every subscriber above itself.
                n = len(change.path)
                for sub, (depth, below) in matches.items():
                    if sub.stop_bubbling and not below and stop_depth < depth < n:
                        stop_depth = depth
            event: StateChanged | None = None
            for sub, (depth, below) in matches.items():
                if only is not None and sub is not only:
                    continue
                if below:
                    if sub.literal and unchanged_below(change, sub.segments):
                        continue
                elif depth < stop_depth:
                    continue
                if event is None:
                    event = _state_changed(
                        revision,
                        format_path(change.path),
                        change.kind,
                        change.old,
                        change.new,
                        action.id,
                        action.source,
                        action.payload,
                    )
                events = routed.get(sub)
                if events is None:
                    routed[sub] = [event]
                else:
                    events.append(event)
        return routed

    async def flush(self) -> None:
        if not self.outbox:
            return
        outbox, self.outbox = self.outbox, []
        for sub, delivery in outbox:
            if not sub.put_nowait(delivery):
                await sub.put(delivery)

    def refuse(self, request: _Request, error: BaseException) -> None:
        request.error = error
        request.done.set()

    def shut_down(self) -> None:
        """Refuse what is still queued and close the mailbox; wake every sender."""
        self.closed = True
        unanswered = [r for r in self.batch if not r.done.is_set()]
        if self.broken is None:
            error: Exception = StateClosedError("the state actor was stopped")
        elif isinstance(self.broken, anyio.get_cancelled_exc_class()):
            error = StateBrokenError("the state actor was cancelled")
        else:
            error = StateBrokenError(f"the state actor crashed: {self.broken!r}")
        for request in unanswered:
            self.refuse(request, error)
        if self.persister is not None:
            self.persister.abandon(error)
        for request in self.mailbox.close():
            self.refuse(request, error)
        for sub, delivery in self.outbox:
            delivery.collector.give_up(sub.name)
        self.outbox = []

    async def wait_subscribers(self) -> None:
        subs = list(self.subscribers.values())
        for sub in subs:
            sub.close(drain=True)
        with anyio.move_on_after(self.stop_timeout):
            for sub in subs:
                await sub.wait_finished()
        for sub in subs:
            sub.close(drain=False)

    def replay(
        self, sub: Subscriber, since: int, older: list[FeedEntry] | None = None
    ) -> None:
        """Give *sub* every matching change after *since*, in order, then live.

        Runs without yielding right after *sub* joined the trie, so the live
        feed starts exactly after the replay: no gap, no duplicate. Revisions
        not yet committed are attached to their pending commit, so that, as
        live events, they reach *sub* only once on disk.
        """
        persister = self.persister
        durable = (
            self.tree.revision if persister is None else persister.durable_revision
        )
        pending = [] if persister is None else list(persister.inflight)
        backlog: list[_Delivery] = []
        for old in older or ():  # rebuilt from the files: all committed
            meta = _Replayed(old.action_id, old.source, old.payload)
            routed = self.route(cast("Action", meta), old.revision, old.changes, sub)
            events = routed.get(sub)
            if events:
                collector = AckCollector(old.revision, [sub.name], self.new_event)
                backlog.append(_Delivery(old.revision, tuple(events), collector))
        if older:
            since = older[-1].revision
        j = 0
        for entry in self.history.since(since):
            events = self.route(entry.action, entry.revision, entry.changes, sub).get(
                sub
            )
            if not events:
                continue
            collector = AckCollector(entry.revision, [sub.name], self.new_event)
            delivery = _Delivery(entry.revision, tuple(events), collector)
            while j < len(pending) and pending[j].revision < entry.revision:
                j += 1
            if entry.revision <= durable or j == len(pending):
                backlog.append(delivery)
            else:
                pending[j].outbox.append((sub, delivery))
        sub.replay(backlog)

    def unique_name(self, base: str) -> str:
        """*base*, or ``base#N`` when a subscriber holds it already."""
        self.unnamed += 1
        name = base if base not in self.subscribers else f"{base}#{self.unnamed}"
        while name in self.subscribers:
            self.unnamed += 1
            name = f"{base}#{self.unnamed}"
        return name

    def add_subscriber(self, sub: Subscriber) -> None:
        self.subscribers[sub.name] = sub
        self.trie.add(sub.segments, sub)
        if sub.stop_bubbling:
            self.stoppers += 1
        self.tg.start_soon(sub.run, name=f"stateward subscriber {sub.name!r}")

    def remove_subscriber(self, sub: Subscriber) -> None:
        if self.subscribers.get(sub.name) is sub:
            del self.subscribers[sub.name]
            self.trie.remove(sub.segments, sub)
            if sub.stop_bubbling:
                self.stoppers -= 1
        for delivery in [d for s, d in self.outbox if s is sub]:
            delivery.collector.give_up(sub.name)
        self.outbox = [(s, d) for s, d in self.outbox if s is not sub]
        sub.close(drain=False)


@final
class Receipt(metaclass=_NoPublicConstructor):
    """The result of one applied action, returned by :meth:`StateHandle.send`.

    Holding a receipt costs nothing; :meth:`acks` may be awaited by any number
    of tasks, any number of times.
    """

    __slots__ = (
        "_collector",
        "action_id",
        "changed",
        "derive_errors",
        "revision",
        "subscribers",
    )

    def __init__(
        self,
        revision: int,
        changed: bool,
        subscribers: tuple[str, ...],
        action_id: str,
        collector: AckCollector | None,
        derive_errors: tuple[str, ...] = (),
    ) -> None:
        self.revision = revision
        """The revision after the action (unchanged when it changed nothing)."""
        self.changed = changed
        """Whether the action changed anything (an equal write does not)."""
        self.subscribers = subscribers
        """Names of the subscribers that were sent its events and will be asked."""
        self.action_id = action_id
        """The action's id."""
        self.derive_errors = derive_errors
        """``"dest: error"`` for each derivation that raised after this action
        (its previous value stayed)."""
        self._collector = collector

    def __repr__(self) -> str:
        return (
            f"<Receipt rev={self.revision} changed={self.changed} "
            f"subscribers={list(self.subscribers)}>"
        )

    async def acks(self, timeout: float | None = None) -> AckReport:
        """Wait for every asked subscriber's Ack, or until *timeout* seconds pass.

        Returns the report in both cases: a subscriber that did not answer in
        time, or whose event was dropped by its overflow policy, is listed in
        ``missing``. Cancelling this wait loses nothing: the Acks keep being
        collected, and the next call sees them. Always a checkpoint.

        Args:
            timeout: Seconds to wait at most; None waits until every
                subscriber answered or gave up.
        """
        if self._collector is None:
            await anyio.lowlevel.checkpoint()
            return _EMPTY_REPORT
        return await self._collector.wait(timeout)


@final
@attrs.frozen
class StateStatistics:
    """A snapshot of the state actor's counters."""

    revision: int
    """The current revision."""
    subscribers: int
    """Subscribers registered now."""
    mailbox_used: int
    """Actions waiting in the mailbox."""
    mailbox_size: int
    """The mailbox's bound."""
    senders_waiting: int
    """Senders parked because the mailbox was full (they hold their action)."""
    applied: int
    """Actions applied (including those that changed nothing)."""
    rejected: int
    """Actions rejected with an ActionRejectedError."""
    durable_revision: int | None = None
    """Persisted states: the last revision committed to the journal."""
    journal_commits: int = 0
    """Persisted states: group commits written (each one write, maybe one fsync)."""
    journal_fsyncs: int = 0
    """Persisted states: fsyncs of the journal."""
    snapshots: int = 0
    """Persisted states: snapshots written since it started."""


@final
class Subscription(metaclass=_NoPublicConstructor):
    """A live subscription, returned by :meth:`StateHandle.subscribe`.

    Also an async context manager that unsubscribes on exit.
    """

    __slots__ = ("_core", "_sub", "start_revision")

    def __init__(self, core: _Core, sub: Subscriber, start_revision: int) -> None:
        self._core = core
        self._sub = sub
        self.start_revision = start_revision
        """The revision when it started: it receives every change after it."""

    @property
    def name(self) -> str:
        """The subscriber's unique name (used in Acks and reports)."""
        return self._sub.name

    @property
    def pattern(self) -> str:
        """The pattern it was registered with."""
        return self._sub.pattern

    def __repr__(self) -> str:
        return repr(self._sub).replace("<Subscriber", "<Subscription", 1)

    def statistics(self) -> SubscriberStatistics:
        """Return a snapshot of the subscriber's counters (never blocks)."""
        return self._sub.statistics()

    async def unsubscribe(self) -> None:
        """Stop the subscriber and wait until its task has ended.

        No event is delivered after this starts; a handler running now is
        cancelled; queued deliveries are reported as missing to their senders.
        Idempotent.
        """
        self._core.remove_subscriber(self._sub)
        await self._sub.wait_finished()

    async def __aenter__(self) -> Subscription:
        """Return the subscription itself."""
        await anyio.lowlevel.checkpoint()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Unsubscribe."""
        await self.unsubscribe()


@final
class StateHandle(metaclass=_NoPublicConstructor):
    """What a running :class:`StateActor` gives you: send, read, subscribe, stop.

    Every method may be called from any task on the actor's event loop (not
    from other threads: use :class:`~stateward.Store` there). Async methods
    are checkpoints; sync ones never block.
    """

    __slots__ = ("_core", "_mailbox", "_new_signal")

    def __init__(self, core: _Core) -> None:
        self._core = core
        self._mailbox = core.mailbox
        self._new_signal = core.new_signal

    def __repr__(self) -> str:
        stats = self.statistics()
        return (
            f"<StateHandle rev={stats.revision} subscribers={stats.subscribers} "
            f"mailbox={stats.mailbox_used}/{stats.mailbox_size}"
            f"{' closed' if self._core.closed else ''}>"
        )

    @property
    def revision(self) -> int:
        """The current revision (the last action that changed something)."""
        return self._core.tree.revision

    async def send(self, action: Action, *, durable: bool | None = None) -> Receipt:
        """Send *action* and return once the state actor has applied it.

        Order: actions are applied in the order they enter the mailbox. After
        ``send`` returns, every read sees the write. When the mailbox is full,
        this waits (backpressure); see :meth:`send_nowait`.

        Durability (persisted states only): with ``durable=True`` this returns
        only once the action's journal record is fsynced; ``False`` returns as
        soon as it is applied in memory; None follows the state's
        ``durability``. Concurrent durable senders share one fsync (group
        commit). Events of an action always wait for its record.

        Cancellation: cancelled before the state actor took the action out of
        its mailbox (also: already cancelled when calling), it is not
        applied. Cancelled after, it is still applied, whole (you just do not
        get the receipt). Never half-applied.

        Raises:
            ActionRejectedError: The tree could not apply it; nothing changed.
            StateClosedError: The actor was stopped before it applied it.
            StateBrokenError: The actor crashed.
            DurabilityError: The journal failed (fail-stop): not acknowledged.
            InvalidActionError: *action* is not an action, or *durable* was
                asked of a state that is not persisted.
        """
        return await self._enqueue(self._request(action, durable))

    async def _enqueue(self, request: _Request, *, park: bool = True) -> Receipt:
        mailbox = self._mailbox
        try:
            if not mailbox.put_nowait(request):
                if not park:
                    raise anyio.WouldBlock
                # Full: park. The actor lets parked requests in, in order, so
                # this task wakes once, when its action has been applied.
                mailbox.park(request)
        except anyio.ClosedResourceError:
            raise self._closed_error() from None
        done = request.done
        try:
            # This call's checkpoint. Cancelled here (or already) before the
            # actor took the request, the request is abandoned: withdrawn, and
            # skipped should the actor reach it first. Cancelled after, the
            # action is applied whole all the same.
            await done.wait()
        except BaseException:
            if not done.is_set():
                mailbox.withdraw(request)
            raise
        return self._answer(request)

    async def send_nowait(
        self, action: Action, *, durable: bool | None = None
    ) -> Receipt:
        """Send *action* if the mailbox has room now, else raise ``anyio.WouldBlock``.

        Then wait until it is applied, as :meth:`send`. For producers that
        prefer shedding load to waiting.

        Raises:
            anyio.WouldBlock: The mailbox is full; the action was not sent.
        """
        return await self._enqueue(self._request(action, durable), park=False)

    def _check_open(self) -> None:
        """Raise what a call on a failed or stopped state must raise."""
        core = self._core
        if core.failed is not None:
            raise core.failed
        if core.closed:
            raise self._closed_error()

    def _request(self, action: Action, durable: bool | None) -> _Request:
        self._check_open()
        if not isinstance(cast("object", action), Action) or type(action) is Action:
            reason = f"expected an action such as Set or Delete, got {action!r}"
            raise InvalidActionError("action", reason)
        return _Request(action, self._new_signal(), self._wait_for(durable))

    def _wait_for(self, durable: bool | None) -> int:
        """What the sender waits for: 0 applied, 1 written, 2 fsynced."""
        persister = self._core.persister
        if persister is None:
            if durable is not None:
                reason = "this state is not persisted (open it with a state_dir)"
                raise InvalidActionError("durable", reason)
            return 0
        if durable is None:
            return WAIT_FOR[persister.config.durability]
        if type(durable) is not bool:
            raise InvalidActionError(
                "durable", f"must be a bool or None (got {durable!r})"
            )
        return 2 if durable else 0

    def _answer(self, request: _Request) -> Receipt:
        if request.error is not None:
            raise request.error
        assert request.receipt is not None
        return request.receipt

    def _closed_error(self) -> Exception:
        broken = self._core.broken
        if broken is not None:
            if isinstance(broken, anyio.get_cancelled_exc_class()):
                return StateBrokenError("the state actor was cancelled")
            return StateBrokenError(f"the state actor crashed: {broken!r}")
        return StateClosedError("the state actor was stopped")

    @overload
    async def get(self, path: PathLike = "") -> JSON: ...
    @overload
    async def get(
        self, path: PathLike, default: JSON, *, write_default: bool = False
    ) -> JSON: ...
    async def get(
        self, path: PathLike = "", default: JSON = None, *, write_default: bool = False
    ) -> JSON:
        """Return a private copy of the value at *path*, or *default* if missing.

        A checkpoint; see :meth:`get_nowait` for the synchronous form. On a
        persisted state, it returns only once the revision it read is
        committed to the journal: a read never returns what a crash could undo.

        With *write_default*, a missing value is first written as *default*
        (one ``Set``, its events and acks as usual), unless another writer got
        there first: then that value is returned. Atomic: an optimistic
        ``Transaction(if_revision=...)``, retried when the state moved.

        Raises:
            ActionRejectedError: *default* cannot be written at *path*.
        """
        if write_default:
            return await self._get_or_write(path, default)
        await anyio.lowlevel.checkpoint()
        value = self.get_nowait(path, default)
        persister = self._core.persister
        if persister is not None:
            await persister.wait_durable(self._core.tree.revision)
        return value

    async def _get_or_write(self, path: PathLike, default: JSON) -> JSON:
        segments = parse_path(path)
        write = Set(segments, default)  # validated once, before any wait
        while True:
            await anyio.lowlevel.checkpoint()
            core = self._core
            if core.failed is not None:
                raise core.failed
            found = core.tree.lookup(segments)
            if found is not MISSING:
                value: JSON = copy_json(found)
                await self.wait_durable()
                return value
            try:
                await self.send(Transaction([write], if_revision=core.tree.revision))
            except RevisionMismatchError:
                continue  # the state moved: read again
            written: JSON = copy_json(write.value)
            return written

    async def wait_durable(self, revision: int | None = None) -> int:
        """Wait until *revision* (default: the current one) is in the journal.

        Returns the revision waited for. On a state that is not persisted it
        returns at once. Use it to make sure that what you read, or what a
        non-durable ``send`` wrote, would survive a crash.

        Raises:
            DurabilityError: The journal failed; the state must be reopened.
        """
        await anyio.lowlevel.checkpoint()
        core = self._core
        target = core.tree.revision if revision is None else revision
        if core.failed is not None:
            raise core.failed
        if core.persister is not None:
            await core.persister.wait_durable(target)
        return target

    def get_nowait(self, path: PathLike = "", default: JSON = None) -> JSON:
        """Return a private copy of the value at *path*, or *default* (never blocks).

        Consistent: the state actor applies every action without yielding, so
        a read never sees half an action. Costs O(depth + size of the value).
        On a persisted state it may see a write whose commit is in flight; use
        :meth:`get` to wait for it.

        Raises:
            InvalidPathError: *path* cannot be parsed.
            DurabilityError: The journal failed; the state must be reopened.
        """
        if self._core.failed is not None:
            raise self._core.failed
        found = self._core.tree.lookup(parse_path(path))
        return default if found is MISSING else copy_json(found)

    async def subscribe(
        self,
        pattern: PathLike,
        handler: Handler,
        *,
        name: str | None = None,
        overflow: Overflow = Overflow.BLOCK,
        mailbox_size: int = 64,
        block_timeout: float = 1.0,
        handler_timeout: float | None = None,
        stop_bubbling: bool = False,
        from_revision: int | None = None,
    ) -> Subscription:
        """Start a subscriber actor for *pattern* and return its subscription.

        It receives every change after the current revision whose path
        matches *pattern*, is below it (bubbling), or replaced it from above,
        one delivery per action, in revision order. Each delivery is answered
        with one Ack from *handler*'s return values.

        Args:
            pattern: A path, with ``*`` (one segment) and ``**`` (any) allowed.
            handler: Sync or async; see :data:`~stateward.Handler`.
            name: Unique name in Acks and reports; default: the handler's
                name, made unique.
            overflow: What a full mailbox does; see :class:`Overflow`.
            mailbox_size: Deliveries that may wait for this subscriber.
            block_timeout: With ``Overflow.BLOCK``, the longest the state actor
                waits for room before dropping.
            handler_timeout: Cancel a handler call after this many seconds and
                answer ``RAS.TIMEOUT``; None: no limit.
            stop_bubbling: Changes this subscriber receives from below are not
                passed on to subscribers of its ancestors. Decided here, not in
                the handler, so that no subscriber waits for another's handler.
            from_revision: First replay every matching change made after this
                revision (from the history ring; on a persisted state, older
                ones rebuilt from snapshot + journal), then continue live: no gap,
                no duplicate, one delivery per revision, in order (etcd's
                watch guarantees). Replayed deliveries are acked like live
                ones, but no sender waits for them.

        Raises:
            CompactedError: *from_revision* is older than the history kept
                (it names the oldest revision to resume from).
            DuplicateNameError: *name* is taken.
            InvalidPathError: *pattern* cannot be parsed.
            StateClosedError: The actor was stopped.
        """
        await anyio.lowlevel.checkpoint()
        core = self._core
        self._check_open()
        segments = parse_pattern(pattern)
        if not callable(cast("object", handler)):
            reason = f"must be callable (got {handler!r})"
            raise InvalidActionError("handler", reason)
        check_int("mailbox_size", mailbox_size, 1)
        if not isinstance(cast("object", overflow), Overflow):
            reason = f"must be an Overflow (got {overflow!r})"
            raise InvalidActionError("overflow", reason)
        check_seconds("block_timeout", block_timeout)
        if handler_timeout is not None:
            check_seconds("handler_timeout", handler_timeout)
        older: list[FeedEntry] = []
        if from_revision is not None:
            _check_from_revision(core, from_revision)
            older = await self._older_feed(from_revision)  # may read the files
            self._check_open()
        # From here on, no await: the replay meets the live feed exactly.
        if name is None:
            base: str = getattr(handler, "__qualname__", type(handler).__name__)
            name = core.unique_name(base)
        elif type(name) is not str or not name:
            reason = f"must be a non-empty str (got {name!r})"
            raise InvalidActionError("name", reason)
        elif name in core.subscribers:
            raise DuplicateNameError(name)
        sub = Subscriber(
            name=name,
            pattern=format_path(segments),
            segments=segments,
            handler=handler,
            overflow=overflow,
            mailbox_size=mailbox_size,
            block_timeout=float(block_timeout),
            handler_timeout=None if handler_timeout is None else float(handler_timeout),
            stop_bubbling=bool(stop_bubbling),
            new_signal=core.new_signal,
        )
        core.add_subscriber(sub)
        if from_revision is not None:
            core.replay(sub, from_revision, older)
        return Subscription._create(core, sub, core.tree.revision)

    async def _older_feed(self, since: int) -> list[FeedEntry]:
        """What the ring no longer holds after *since*, rebuilt from the files.

        Returns when the ring covers the rest (then the caller adds its
        subscriber without yielding: nothing can fall in between).
        """
        core = self._core
        entries: list[FeedEntry] = []
        after = since
        for _ in range(8):
            oldest = core.history.oldest(core.tree.revision)
            if after >= oldest:
                return entries
            persister = core.persister
            if persister is None:
                raise CompactedError(since, oldest)
            await persister.wait_durable(oldest)  # the files hold up to there
            until = persister.durable_revision
            directory = persister.config.state_dir
            try:
                _, got = await anyio.to_thread.run_sync(
                    replay_files, directory, after, until
                )
            except (CorruptStateError, OSError):
                raise await self._compacted(since) from None
            entries.extend(got)
            after = until
        # The state moved faster than the files could be read, eight times.
        raise CompactedError(since, core.history.oldest(core.tree.revision))

    async def derive(
        self, dest: PathLike, source: PathLike, fn: Callable[[JSON], object]
    ) -> Receipt:
        """Keep ``dest = fn(value at source)`` up to date, inside the state actor.

        *fn* gets a private copy of the source's value (None when missing)
        and returns JSON. It runs now (the receipt is that of writing the
        first value) and again after every action that changes the source,
        once per action, in the same revision, before any event of the action
        leaves: no subscriber sees the source and ``dest`` out of step. A
        chain (a derivation of a derived path) settles in the same action.

        *dest* is then read and subscribed to like any path, and written only
        by the derivation: an action writing at or below it is rejected
        (writing above it, the derivation puts its value back). When *fn*
        raises later, ``dest`` keeps its previous value and the action's
        receipt lists the error in ``derive_errors``. Keep *fn* quick and free
        of side effects: it runs in the state actor, between two actions.

        Raises:
            InvalidActionError: *dest* or *source* is not a plain path, they
                overlap, *dest* overlaps another derived path, or the
                derivations would form a cycle.
            ActionRejectedError: *fn* raised on the current value; nothing
                was registered.
        """
        return await self._register(
            _Register(Derivation(dest, [source], fn, many=False))
        )

    async def derive_many(
        self,
        dest: PathLike,
        sources: Iterable[PathLike],
        fn: Callable[[dict[str, JSON]], object],
    ) -> Receipt:
        """As :meth:`derive`, from several sources: ``dest = fn({source: value})``.

        Recomputed once per action however many of its sources it changed,
        never from a mix of old and new values.
        """
        if isinstance(sources, str | tuple):
            reason = "must be a list of paths (a str or a tuple is one path)"
            raise InvalidActionError("sources", reason)
        derivation = Derivation(dest, list(sources), fn, many=True)
        return await self._register(_Register(derivation))

    async def track(
        self,
        fn: Callable[[Reader], Awaitable[object] | object],
        *,
        name: str | None = None,
    ) -> Reaction:
        """Run ``fn(reader)`` now and again whenever something it read changes.

        Every ``reader.get(path)`` in a run records *path*; after an action
        changes a recorded path (or something below or above it that alters
        its value), *fn* runs again, in the reaction's own task. The recorded
        set is replaced by each run, so a branch that stops reading a path
        stops depending on it. Changes made while *fn* runs lead to one more
        run, not one per change. *fn* may be sync or async; an exception is
        logged and counted (``reaction.errors``) and the reaction goes on.
        On a persisted state a run waits until what it would read is in the
        journal.

        Returns once the first run is done. ``await reaction.untrack()``
        stops it and releases every dependency; stopping the state stops it.
        """
        await anyio.lowlevel.checkpoint()
        core = self._core
        self._check_open()
        if not callable(cast("object", fn)):
            raise InvalidActionError("fn", f"must be callable (got {fn!r})")
        label = name or str(getattr(fn, "__qualname__", type(fn).__name__))
        reaction = Reaction(label, fn, core.tree, core.reactions)
        core.reactions.active.add(reaction)

        async def settled() -> None:
            if core.persister is None:
                await anyio.lowlevel.checkpoint()
            else:
                await core.persister.wait_durable(core.tree.revision)

        core.tg.start_soon(reaction.run, settled, name=f"stateward reaction {label!r}")
        await first_run(reaction)
        return reaction

    async def underive(self, dest: PathLike) -> None:
        """Stop deriving *dest* (its last value stays, and may be written again)."""
        await self._register(_Register(None, format_path(parse_path(dest))))

    async def _register(self, reg: _Register) -> Receipt:
        self._check_open()
        request = _Request(reg, self._new_signal(), self._wait_for(None))
        return await self._enqueue(request)

    async def watch(
        self,
        pattern: PathLike = "**",
        *,
        from_revision: int | None = None,
        progress: float | None = None,
        name: str | None = None,
        mailbox_size: int = 64,
    ) -> AsyncGenerator[StateChanged | Resync | Progress]:
        """Iterate over the changes matching *pattern*: the feed as a loop.

        ``async for event in state.watch("jobs.**", from_revision=r)`` gives
        every matching change after *r* (replayed from the history), then
        live ones, as :meth:`subscribe` does, one :class:`StateChanged` at a
        time. Without *from_revision* it starts at the revision current when
        the loop first asks for an event. With *progress* (seconds), an idle
        loop gets a :class:`Progress` naming a revision up to which it has
        seen everything, so a later resume misses nothing.

        Backpressure: the loop body runs at its own pace; while it is busy,
        up to *mailbox_size* deliveries wait, then the state actor waits up to
        a second (``Overflow.BLOCK``), then they are dropped and the loop gets
        one :class:`Resync` (never a silent gap). Leaving the loop (break,
        exception, cancellation) unsubscribes. *name* names its subscriber
        (default ``"watch <pattern>"``, made unique).

        Raises:
            CompactedError: *from_revision* is older than the history kept.
        """
        if progress is not None:
            check_seconds("progress", progress)
        send, receive = anyio.create_memory_object_stream[StateChanged | Resync](0)

        async def forward(event: StateChanged | Resync) -> int:
            await send.send(event)
            return 1

        # The handler's name is the subscriber's default name, made unique
        # where the subscriber is added (no await can come in between).
        forward.__qualname__ = f"watch {format_path(parse_pattern(pattern))}"
        subscription = await self.subscribe(
            pattern,
            forward,
            name=name,
            mailbox_size=mailbox_size,
            from_revision=from_revision,
        )
        sub = subscription._sub
        try:
            with receive:
                while True:
                    if progress is None:
                        yield await receive.receive()
                        continue
                    with anyio.move_on_after(progress):
                        event = await receive.receive()
                        yield event
                        continue
                    if sub.idle():
                        yield Progress(self._core.released)
        finally:
            with anyio.CancelScope(shield=True):
                await subscription.unsubscribe()
            send.close()

    async def at_revision(self, revision: int) -> JSON:
        """Return the whole tree as it was right after *revision* (a copy).

        From the history ring when it reaches back that far: the current tree
        with the newer changes undone, O(size of those changes + tree). On a
        persisted state, older revisions are rebuilt from the newest snapshot
        at or before *revision* plus the journal, in a worker thread.

        Raises:
            CompactedError: Neither the history nor the files reach back to
                *revision*.
            InvalidActionError: *revision* is negative or in the future.
        """
        await anyio.lowlevel.checkpoint()
        core = self._core
        current = core.tree.revision
        if type(revision) is not int or not 0 <= revision <= current:
            reason = f"must be an int in 0..{current} (got {revision!r})"
            raise InvalidActionError("revision", reason)
        if revision >= core.history.oldest(current):
            return undo(core.tree, core.history.newest_first(revision))
        config = None if core.persister is None else core.persister.config
        if config is None:
            raise CompactedError(revision, core.history.oldest(current))
        await self.wait_durable(current)
        try:
            tree, _ = await anyio.to_thread.run_sync(
                replay_files, config.state_dir, revision, revision
            )
        except (CorruptStateError, OSError):
            raise await self._compacted(revision) from None
        return tree.root

    async def _compacted(self, requested: int) -> CompactedError:
        """The error for *requested*: the oldest revision the ring or files reach."""
        core = self._core
        oldest = core.history.oldest(core.tree.revision)
        if core.persister is not None:
            directory = core.persister.config.state_dir
            on_disk = await anyio.to_thread.run_sync(oldest_snapshot, directory)
            if on_disk is not None:
                oldest = min(on_disk, oldest)
        return CompactedError(requested, oldest)

    def action_log(self) -> list[LoggedAction]:
        """The last actions (``action_log`` of them), oldest first (never blocks).

        Each with its revision, id, type, source, result (applied, unchanged
        or rejected and why), the paths it changed with their new values, and
        the derivations that raised. Values under a ``redact`` pattern show as
        ``"<redacted>"``.
        """
        return self._core.log.entries()

    def statistics(self) -> StateStatistics:
        """Return a snapshot of the actor's counters (never blocks)."""
        core = self._core
        mailbox = core.mailbox
        p = core.persister
        return StateStatistics(
            revision=core.tree.revision,
            subscribers=len(core.subscribers),
            mailbox_used=len(mailbox),
            mailbox_size=mailbox.size,
            senders_waiting=mailbox.parked,
            applied=core.applied,
            rejected=core.rejected,
            durable_revision=None if p is None else p.durable_revision,
            journal_commits=0 if p is None else p.commits,
            journal_fsyncs=0 if p is None else p.fsyncs,
            snapshots=0 if p is None else p.snapshots,
        )

    def subscriber_statistics(self) -> dict[str, SubscriberStatistics]:
        """Return every subscriber's counters, by name (never blocks)."""
        return {n: s.statistics() for n, s in self._core.subscribers.items()}

    async def stop(self, *, timeout: float | None = 5.0) -> None:
        """Apply what was sent before, refuse what comes after, and stop.

        Every action already in the mailbox is applied and its events are
        delivered; subscribers then get up to *timeout* seconds to handle
        their queued deliveries before they are cancelled. Returns once the
        actor's task has ended. Idempotent.

        After ``stop`` starts, ``send`` and ``subscribe`` raise
        :class:`StateClosedError`.
        """
        core = self._core
        if not core.closed:
            core.closed = True
            core.stop_timeout = timeout
            marker = _Request(None, self._new_signal())
            # Parked when the mailbox is full, and never withdrawn: the actor
            # stops after what was sent before, even if this call is cancelled.
            with contextlib.suppress(anyio.ClosedResourceError):
                if not core.mailbox.put_nowait(marker):
                    core.mailbox.park(marker)
        await core.finished.wait()

    @property
    def closed(self) -> bool:
        """Whether :meth:`stop` was called (or the actor ended)."""
        return self._core.closed


def _check_from_revision(core: _Core, from_revision: int) -> None:
    check_int("from_revision", from_revision, 0)
    current = core.tree.revision
    if from_revision > current:
        reason = f"{from_revision} is ahead of the state (revision {current})"
        raise InvalidActionError("from_revision", reason)


@asynccontextmanager
async def open_state(
    initial: object = None,
    *,
    mailbox_size: int = 64,
    state_dir: str | os.PathLike[str] | None = None,
    durability: Durability = "fsync",
    snapshot_every: int = 10_000,
    keep_snapshots: int = 3,
    snapshot_interval: float | None = None,
    history: int = 1000,
    action_log: int = 100,
    redact: Iterable[str] = (),
) -> AsyncIterator[StateHandle]:
    """Run a state actor for the duration of the ``async with`` block.

    *initial* is any JSON value (``{}`` when None), validated and copied.

    With *state_dir*, the state is persisted there (journal + snapshots; see
    :mod:`stateward.actors.persistence`) and recovered from it when it exists
    (then *initial* is ignored). *durability* is what a send waits for by
    default (``"fsync"``, ``"flush"`` or ``"none"``); a snapshot is written
    every *snapshot_every* revisions, at the first change once the last one is
    *snapshot_interval* seconds old (if given), and at a clean exit; the
    newest *keep_snapshots* are kept.

    The last *history* revisions are remembered for ``from_revision`` feeds
    (:meth:`StateHandle.subscribe`, :meth:`StateHandle.watch`) and
    :meth:`StateHandle.at_revision`; the last *action_log* actions for
    :meth:`StateHandle.action_log`, with the values under the *redact*
    patterns masked.

    On a normal exit it stops gracefully (:meth:`StateHandle.stop`); on an
    exception the actor and its subscribers are cancelled and the exception
    propagates.
    """
    persistence = (
        None
        if state_dir is None
        else PersistenceConfig(
            os.fspath(state_dir),
            durability,
            snapshot_every,
            keep_snapshots,
            snapshot_interval,
        )
    )
    actor = StateActor(
        initial=initial,
        mailbox_size=mailbox_size,
        persistence=persistence,
        history=history,
        action_log=action_log,
        redact=_to_patterns(redact),
    )
    error: BaseException | None = None
    async with anyio.create_task_group() as tg:
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
    if error is not None:
        raise error
