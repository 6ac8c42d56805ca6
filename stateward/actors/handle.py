"""The handle of a running state actor: what users send, read and subscribe with.

A :class:`StateHandle` is made by :meth:`StateActor.run` (or
:func:`open_state`) once the actor is ready; its async methods are
checkpoints, its sync ones never block.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, cast, final, overload

import anyio

from .._changes import MISSING
from .._checks import (
    MAX_MAILBOX,
    check_bool,
    check_callable,
    check_int,
    check_seconds,
    check_text,
)
from .._errors import (
    ActionRejectedError,
    DuplicateNameError,
    InvalidActionError,
    RevisionMismatchError,
    StateBrokenError,
    StateClosedError,
    short_repr,
)
from .._json import JSON, copy_json
from ..messages.actions import Action, Set, Transaction
from ..paths import PathLike, format_path, parse_path, parse_pattern
from ._feed_replay import replay
from ._handle_feed import HandleFeed, _check_from_revision
from ._handle_inspect import HandleInspection
from ._handle_reactive import HandleReactive
from ._large_reads import collect_value, encode_frames, read_at
from ._persister import WAIT_FOR
from ._requests import _Request
from ._subscription import StateStatistics, Subscription
from ._util import NoPublicConstructor
from .persistence._fork import ForkedBody
from .subscriber import Handler, Overflow, Subscriber

if TYPE_CHECKING:
    from collections.abc import (
        Sequence,
    )

    from ._ack import Receipt
    from ._core import _Core
    from ._mailbox import Signal
    from .persistence import FeedEntry


__all__ = ["StateHandle", "StateStatistics", "Subscription"]


@final
class StateHandle(
    HandleFeed, HandleReactive, HandleInspection, metaclass=NoPublicConstructor
):
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

    def _request(
        self, action: Action, durable: bool | None, signal: Signal | None = None
    ) -> _Request:
        core = self._core
        if core.failed is not None or core.closed:
            self._check_open()
        if not isinstance(cast("object", action), Action) or type(action) is Action:
            got = short_repr(action, 60)
            reason = f"expected an action such as Set or Delete, got {got}"
            raise InvalidActionError("action", reason)
        # The common case, in place: nothing persisted, nothing asked.
        if durable is None and core.persister is None:
            wait = 0
        else:
            wait = self._wait_for(durable)
        return _Request(action, self._new_signal() if signal is None else signal, wait)

    def _put_from_thread(self, request: _Request) -> None:
        """Queue a request whose sender is another thread; on the loop, never raises.

        The :class:`~stateward.Store`'s writes: the request's signal is a
        thread's (see ``_handoff``), answered by the actor as any other, or,
        when the actor is idle, applied right here (``_Core.apply_now``).
        """
        if self._core.apply_now(request):
            return  # the actor was idle: applied and answered here
        try:
            self._mailbox.put(request)
        except anyio.ClosedResourceError:
            request.error = self._closed_error()
            request.done.set()

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
        check_bool("durable", durable, optional=True)  # (None: handled above)
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
        A large value (the whole tree of a big state, say), whose copy would
        stop the state actor longer than a fork of the process does, is
        encoded by a forked child and rebuilt here in slices of about a
        millisecond, so that the actor goes on meanwhile; it is the value
        at one instant all the same (``docs/persistence.md``).

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
        core = self._core
        if core.failed is not None:
            raise core.failed
        tree, at = core.tree, parse_path(path)
        revision = tree.revision
        value = read_at(tree, at, default, encode_frames)
        if isinstance(value, ForkedBody):  # a large value
            revision, value = await collect_value(
                tree, revision, at, default, value, core.freezer.freeze
            )
        if core.persister is not None:
            await core.persister.wait_durable(revision)
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
        check_callable("handler", handler)
        check_int("mailbox_size", mailbox_size, 1, maximum=MAX_MAILBOX)
        if not isinstance(cast("object", overflow), Overflow):
            reason = f"must be an Overflow (got {short_repr(overflow, 60)})"
            raise InvalidActionError("overflow", reason)
        check_seconds("block_timeout", block_timeout)
        if handler_timeout is not None:
            check_seconds("handler_timeout", handler_timeout, positive=True)
        older: list[FeedEntry] = []
        reached = 0
        if from_revision is not None:
            _check_from_revision(core, from_revision)
            # (may read the files; only what may reach this subscriber)
            older, reached = await self._older_feed(from_revision, segments)
            self._check_open()
        # From here on, no await: the replay meets the live feed exactly.
        if name is None:
            base: str = getattr(handler, "__qualname__", type(handler).__name__)
            name = core.routes.unique_name(base)
        elif type(name) is not str or not name:
            reason = f"must be a non-empty str (got {short_repr(name, 60)})"
            raise InvalidActionError("name", reason)
        else:
            check_text("name", name)  # (it is in every report, sent as JSON)
            if name in core.subscribers:
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
            replay(core, sub, reached, older)
        return Subscription._create(core, sub, core.tree.revision)

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
