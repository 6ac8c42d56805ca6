"""The handle of a running state actor: what users send, read and subscribe with.

A :class:`StateHandle` is made by :meth:`StateActor.run` (or
:func:`open_state`) once the actor is ready; its async methods are
checkpoints, its sync ones never block.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, cast, final, overload

import anyio
import attrs

from .._checks import MAX_MAILBOX, check_int, check_seconds
from .._errors import (
    ActionRejectedError,
    CompactedError,
    CorruptStateError,
    DuplicateNameError,
    InvalidActionError,
    RevisionMismatchError,
    StateBrokenError,
    StateClosedError,
)
from .._json import JSON, copy_json
from ..messages.actions import Action, Set, Transaction
from ..messages.events import Progress, Resync, StateChanged
from ..paths import PathLike, format_path, parse_path, parse_pattern
from ..tree import MISSING
from ._core import _Core, _Register, _Request
from ._derive import Derivation
from ._history import undo
from ._persister import WAIT_FOR
from ._track import Reaction, Reader, first_run
from ._util import NoPublicConstructor
from .persistence import FeedEntry, oldest_snapshot, replay_files
from .subscriber import Handler, Overflow, Subscriber, SubscriberStatistics

if TYPE_CHECKING:
    from collections.abc import (
        AsyncGenerator,
        Awaitable,
        Callable,
        Iterable,
        Sequence,
    )

    from ._ack import Receipt
    from ._log import LoggedAction


__all__ = ["StateHandle", "StateStatistics", "Subscription"]


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
class Subscription(metaclass=NoPublicConstructor):
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
class StateHandle(metaclass=NoPublicConstructor):
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

    @property
    def state_dir(self) -> str | None:
        """The directory a persisted state lives in; None for a state in memory."""
        persister = self._core.persister
        return None if persister is None else persister.config.state_dir

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
            if park:
                # Parked when full: this task wakes once, when it is answered.
                mailbox.put(request)
            elif not mailbox.put_nowait(request):
                raise anyio.WouldBlock
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

    async def _send_in_order(
        self, actions: Sequence[tuple[Action, bool | None]]
    ) -> list[Receipt | ActionRejectedError | InvalidActionError]:
        """Send each ``(action, durable)`` in order; one wake-up for them all.

        Each action is applied as by :meth:`send`, in this order (each its own
        revision: not atomic). Returns each one's receipt or the error that
        refused it. For the remote owner, which applies a read of requests.

        Raises:
            StateClosedError, StateBrokenError, DurabilityError: as ``send``.
        """
        requests = [self._request(action, durable) for action, durable in actions]
        mailbox = self._mailbox
        try:
            for request in requests:
                mailbox.put(request)
        except anyio.ClosedResourceError:
            raise self._closed_error() from None
        results: list[Receipt | ActionRejectedError | InvalidActionError] = []
        try:
            for request in requests:
                await request.done.wait()
                error = request.error
                if isinstance(error, (ActionRejectedError, InvalidActionError)):
                    results.append(error)
                else:
                    results.append(self._answer(request))
        except BaseException:
            for request in requests:
                if not request.done.is_set():
                    mailbox.withdraw(request)
            raise
        return results

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
        core = self._core
        if core.failed is not None or core.closed:
            self._check_open()
        if not isinstance(cast("object", action), Action) or type(action) is Action:
            reason = f"expected an action such as Set or Delete, got {action!r}"
            raise InvalidActionError("action", reason)
        # The common case, in place: nothing persisted, nothing asked.
        if durable is None and core.persister is None:
            wait = 0
        else:
            wait = self._wait_for(durable)
        return _Request(action, self._new_signal(), wait)

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

        The subscriber runs as a task of its own. Its handler runs on the
        event loop: a handler that never awaits is interrupted by a
        checkpoint after 64 deliveries or 2 ms of handling, whichever comes
        first (``docs/concurrency.md``, *Fairness*).

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
        check_int("mailbox_size", mailbox_size, 1, maximum=MAX_MAILBOX)
        if not isinstance(cast("object", overflow), Overflow):
            reason = f"must be an Overflow (got {overflow!r})"
            raise InvalidActionError("overflow", reason)
        check_seconds("block_timeout", block_timeout)
        if handler_timeout is not None:
            check_seconds("handler_timeout", handler_timeout, positive=True)
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
            on_exit=core.request_exit,
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

    def _tap(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call *callback* (it must not block) whenever changes are released.

        Released: applied, committed (persisted states) and handed to the
        subscribers. Returns the function that removes the tap.
        """
        taps = self._core.taps
        taps.append(callback)
        return lambda: taps.remove(callback)

    @property
    def _released(self) -> int:
        """Every change up to this revision is released (see :meth:`_tap`)."""
        return self._core.released

    async def _changes_after(self, after: int, until: int) -> list[FeedEntry]:
        """The changes of revisions *after* + 1 .. *until* (<= released), oldest first.

        From the history ring, else rebuilt from the files (persisted states).

        Raises:
            CompactedError: Neither reaches back to *after*.
        """
        core = self._core
        older = await self._older_feed(after) if after < until else []
        start = older[-1].revision if older else after
        entries = list(older)
        for entry in core.history.since(start):
            if entry.revision > until:
                break
            entries.append(
                FeedEntry(
                    entry.revision,
                    entry.action.id,
                    entry.action.source,
                    entry.action.payload,
                    entry.changes,
                )
            )
        return [e for e in entries if after < e.revision <= until]

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
        reaction = Reaction._create(label, fn, core.tree, core.reactions)
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
        check_seconds("timeout", timeout, optional=True)
        core = self._core
        if not core.closed:
            core.closed = True
            core.stop_timeout = timeout
            marker = _Request(None, self._new_signal())
            # Parked when the mailbox is full, and never withdrawn: the actor
            # stops after what was sent before, even if this call is cancelled.
            with contextlib.suppress(anyio.ClosedResourceError):
                core.mailbox.put(marker)
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
