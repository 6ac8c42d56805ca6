"""The state actor's insides: its loop, its step, and how it stops.

One :class:`_Core` per running :class:`~stateward.StateActor`, shared by the
actor's task (which runs :meth:`_Core.loop`) and its
:class:`~stateward.StateHandle` (same event loop, never another thread).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Final, cast

import anyio

from .._errors import (
    ActionRejectedError,
    DurabilityError,
    StateBrokenError,
    StateClosedError,
    StatewardError,
    describe_exception,
    is_exit_request,
)
from ..messages.actions import Action, Set
from ._ack import new_receipt
from ._delivery import Outbox, _Delivery, deliver, deliver_nowait
from ._derive import Derivations
from ._mailbox import Mailbox, current_backend
from ._reaper import Reaper
from ._requests import Commit, _cancellable, _Register, _Request
from ._routing import Routes
from ._track import Reactions
from .persistence import encode_changes, encode_record

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from anyio.abc import TaskGroup

    from .._json import JSON
    from ..tree import Tree
    from ._gc_freeze import Freezer
    from ._history import History
    from ._log import ActionLog
    from ._persister import Persister
    from .subscriber import Subscriber

__all__: list[str] = []  # internal: StateActor and StateHandle use _Core

_BATCH: Final = 256  # most actions applied between two deliveries to subscribers


class _Core:
    """The actor's state, shared by its task and the handle (one event loop)."""

    def __init__(
        self,
        tree: Tree,
        tg: TaskGroup,
        mailbox_size: int,
        history: History,
        log: ActionLog,
        freezer: Freezer,
    ) -> None:
        backend = current_backend()
        self.new_event = backend.new_event
        self.new_signal = backend.new_signal
        self.settle = backend.settle
        self.mailbox: Mailbox[_Request] = Mailbox(mailbox_size, backend.new_signal)
        self.tree = tree
        tree.created = [] if history.size else None
        tree.dropped = []  # large containers let go of: for the reaper
        self.history = history
        self.derivations = Derivations()
        self.reactions = Reactions()
        self.log = log
        self.freezer = freezer
        self.released = tree.revision  # every delivery up to it is in a mailbox
        self.taps: list[Callable[[], None]] = []  # told when released advances
        self.tg = tg
        self.routes = Routes()
        self.subscribers = self.routes.subscribers  # by name (the same dict)
        self.outbox: Outbox = []
        self.batch: list[_Request] = []  # taken from the mailbox, maybe not answered
        self.closed = False
        self.broken: BaseException | None = None
        self.exit: BaseException | None = None  # a handler's Ctrl-C or SystemExit
        self.persister: Persister | None = None
        self.failed: DurabilityError | None = None  # fail-stop after a disk error
        self.records: list[bytes] = []  # journal records of the current batch
        self.whole: tuple[JSON, bytes] | None = None  # see encode_changes()
        self.reaper = Reaper(tg)  # frees large values let go of, in slices
        self.stop_timeout: float | None = 5.0
        self.finished = anyio.Event()
        # Parked on an empty mailbox with nothing in flight: a thread's
        # request may then be applied at once, on the loop (apply_now).
        self.idle = False
        self.blocked: Outbox = []  # left by apply_now: the actor delivers them
        self.crashed: BaseException | None = None  # raised in apply_now
        self.applied = 0
        self.rejected = 0

    async def loop(self) -> None:
        mailbox = self.mailbox
        settle = self.settle
        while True:
            if not len(mailbox):
                self.idle = True
                try:
                    await mailbox.wait()
                finally:
                    self.idle = False
                if self.crashed is not None:
                    raise self.crashed
                if self.blocked:  # left by apply_now: before anything else
                    blocked, self.blocked = self.blocked, []
                    await deliver(blocked)
                    self.release()
                    continue
            if settle is not None and mailbox.any(_cancellable):
                # Let cancellations already under way reach their senders, so
                # that a send cancelled before we take it is skipped (_mailbox).
                # Only a task's send can be: not a Store call's, whose thread
                # waits for the answer whatever happens (one loop turn saved
                # per Store call on asyncio).
                await settle()
            self.batch = batch = mailbox.take(_BATCH)
            stop_at, ready, waiting = self.apply_batch(batch)
            if self.tree.dropped or self.reaper.held:  # (rare: no call otherwise)
                self.reaper.after_step(self.tree.dropped)
            persister = self.persister
            if persister is None:
                await deliver(self.hand_over(ready))
                self.release()
                self.freezer.advance(self.tree.revision)
            else:
                self.answer(ready)
                await self.commit(persister, waiting)
            if stop_at >= 0:
                stopped = StateClosedError("the state actor was stopped")
                for request in batch[stop_at + 1 :]:
                    self.refuse(request, stopped)
                if persister is not None:
                    await persister.finish()
                batch[stop_at].done.set()
                return

    def release(self) -> None:
        """Every delivery up to the tree's revision is in a mailbox: say so."""
        self.released = self.tree.revision
        if self.taps:
            self.tap()

    def apply_now(self, request: _Request) -> bool:
        """Apply a thread's *request* here and now, if the actor is idle.

        A Store call reaches the loop in a callback; when the actor is parked
        on an empty mailbox with nothing in flight, running the actor's step
        here, synchronously, is what the actor would do next anyway, one turn
        of the loop later. A persisted state's commit goes to the persister
        as from the actor (when its queue has room); a snapshot then due is
        left to the actor, woken for it. Returns False (nothing done) when it
        is not idle: then the request goes through the mailbox.
        """
        mailbox = self.mailbox
        # Idle, and not woken yet: a request put before this one (a task's
        # send) would still be in the mailbox, and must go first.
        if not self.idle or len(mailbox) or mailbox.parked or mailbox.closed:
            return False
        persister = self.persister
        if persister is not None and not persister.has_room():
            return False
        self.batch = [request]
        try:
            _, ready, waiting = self.apply_batch(self.batch)
            if self.tree.dropped or self.reaper.held:
                self.reaper.after_step(self.tree.dropped)
            if persister is not None:
                self.answer(ready)
                self.commit_now(persister, waiting)
                self.batch = []
                return True
        except BaseException as exc:  # noqa: BLE001 - raised by the actor
            # As a crash in the actor's own step: the actor raises it.
            self.crashed = exc
            self.idle = False
            mailbox.wake()
            return True
        blocked = self.hand_over(ready)
        self.batch = []
        if blocked:
            # Waiting for room is the actor's (it may await): wake it, and
            # until it has delivered these, requests go through the mailbox.
            self.blocked = blocked
            self.idle = False
            mailbox.wake()
        else:
            self.release()
        self.freezer.advance(self.tree.revision)
        return True

    def tap(self) -> None:
        """Tell the taps that :attr:`released` advanced (they must not block)."""
        for tap in self.taps:
            tap()

    def apply_batch(
        self, batch: list[_Request]
    ) -> tuple[int, list[_Request], list[_Request]]:
        """Apply *batch* up to its stop marker.

        Returns the index of the stop marker (-1: none), the requests to
        answer now, and those that wait for their journal record (persisted
        states only). Nothing here yields: the whole batch is applied in one
        step. Should the actor crash half-way, :meth:`shut_down` still
        answers every applied request with its receipt: a crash later in the
        batch never turns an applied action into a refused one.
        """
        ready: list[_Request] = []
        waiting: list[_Request] = []
        for i, request in enumerate(batch):
            if request.action is None:
                return i, ready, waiting
            if request.done.abandoned():
                continue  # its sender was cancelled before we got here
            if self.failed is not None:  # a journal failed: fail-stop
                self.refuse(request, self.failed)
                continue
            self.process(request)
            if request.wait and request.error is None:
                waiting.append(request)
            else:
                ready.append(request)
        return -1, ready, waiting

    def hand_over(self, ready: list[_Request]) -> Outbox:
        """Put the batch's events in the subscribers' mailboxes, then answer *ready*.

        Events first, then the senders: the subscribers run before the
        senders send again, so a batch's deliveries are handled (and freed)
        while they are young. Returns what must wait for room (a full BLOCK
        mailbox), to be delivered after the senders are answered: a slow
        subscriber delays the next actions, never a receipt. (Not persisted
        states: their persister hands events over after the commit.)
        """
        outbox, self.outbox = self.outbox, []
        blocked = deliver_nowait(outbox)
        self.answer(ready)
        return blocked

    @staticmethod
    def answer(ready: list[_Request]) -> None:
        """Wake the senders of *ready*: they run after the actor's next checkpoint."""
        for request in ready:
            request.done.set()

    async def commit(self, persister: Persister, waiting: list[_Request]) -> None:
        """Hand the batch's records, waiters and events to the persister.

        Senders that wait for the disk are answered by the persister after
        their group commit; so are the events of the whole batch (R2).
        """
        commit = self.take_commit(waiting)
        if commit is not None:
            await persister.submit(commit)
        if self.snapshot_due(persister):
            await persister.submit_snapshot(self.tree)

    def take_commit(self, waiting: list[_Request]) -> Commit | None:
        """The batch's records, *waiting* senders and events as one commit (if any)."""
        if not (self.records or waiting or self.outbox):
            return None
        records, self.records = self.records, []
        outbox, self.outbox = self.outbox, []
        return Commit(records, waiting, outbox, self.tree.revision)

    def commit_now(self, persister: Persister, waiting: list[_Request]) -> None:
        """:meth:`commit`, from :meth:`apply_now` (the persister has room).

        A snapshot then due is left to the actor, woken for it: it may fork,
        and it waits for room in the persister's queue.
        """
        commit = self.take_commit(waiting)
        if commit is not None:
            persister.submit_nowait(commit)
        if self.snapshot_due(persister):
            self.idle = False
            self.mailbox.wake()

    def snapshot_due(self, persister: Persister) -> bool:
        """Whether a snapshot of the tree is due; if not, the GC may be frozen.

        A snapshot freezes anyway (:meth:`Persister.submit_snapshot`).
        """
        revision = self.tree.revision
        if persister.snapshot_due(revision):
            return True
        self.freezer.advance(revision)
        return False

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
            return
        self.applied += 1
        revision = tree.revision
        if not changes:
            self.log.record(revision, action, changes, None, ())
            request.receipt = new_receipt(revision, False, action.id)
            return
        errors: tuple[str, ...] = ()
        if derivations.by_dest:
            # Same revision, before any event leaves: glitch-free.
            errors = tuple(derivations.run(tree, changes))
        if self.reactions.active:
            self.reactions.notify(changes)
        self.log.record(revision, action, changes, None, errors)
        history = self.history
        if history.size:  # (the tree starts a new created list next time)
            history.record((revision, action, changes, tree.created or ()))
        if self.persister is not None:
            payload = encode_changes(changes, action, self.whole)
            synced = self.persister.synced_revision
            self.records.append(encode_record(revision, payload, synced))
        routed = (
            self.routes.route(action, revision, changes) if self.subscribers else None
        )
        if not routed:
            request.receipt = new_receipt(revision, True, action.id, (), None, errors)
            return
        names = tuple([sub.name for sub in routed])
        receipt = request.receipt = new_receipt(
            revision, True, action.id, names, self.new_event, errors, self.subscribers
        )
        outbox = self.outbox
        for sub, events in routed.items():
            outbox.append((sub, _Delivery(revision, tuple(events), receipt)))

    def register(self, request: _Request, reg: _Register) -> Action | None:
        """Add or remove a derivation; return the action that writes its value."""
        derivations = self.derivations
        d = reg.derivation
        if d is None:
            derivations.remove(reg.dest)
            request.receipt = new_receipt(self.tree.revision, False, "underive")
            return None
        try:
            derivations.add(d)
        except StatewardError as exc:
            request.error = exc
            return None
        try:
            value = d.compute(self.tree)
        except BaseException as exc:  # refused, reported to the caller
            if is_exit_request(exc):
                raise
            derivations.remove(d.dest)
            reason = f"the derivation raised {describe_exception(exc)}"
            request.error = ActionRejectedError(d.dest, reason)
            return None
        return Set(d.dest, value, source="derive")

    def request_exit(self, exc: BaseException) -> None:
        """A handler raised KeyboardInterrupt or SystemExit: stop, then raise it."""
        if self.exit is None:
            self.exit = exc
        self.tg.cancel_scope.cancel()

    def refuse(self, request: _Request, error: BaseException) -> None:
        request.error = error
        request.done.set()

    def shut_down(self) -> None:
        """Refuse what is still queued and close the mailbox; wake every sender."""
        self.closed = True
        unanswered: list[_Request] = []
        for request in self.batch:
            if request.done.is_set():
                continue
            processed = request.receipt is not None or request.error is not None
            if processed and not (request.wait and request.error is None):
                request.done.set()  # answered before the crash: it stands
            else:
                unanswered.append(request)
        if self.exit is not None:
            reason = f"a handler raised {type(self.exit).__name__}"
            error: Exception = StateBrokenError(f"the state actor stopped: {reason}")
        elif self.broken is None:
            error = StateClosedError("the state actor was stopped")
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
        for sub, delivery in [*self.blocked, *self.outbox]:
            delivery.receipt._give_up(sub.name)
        self.blocked = []
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

    @contextlib.contextmanager
    def taking_whole(
        self, value: JSON, copy: JSON, encoded: bytes | None
    ) -> Iterator[None]:
        """The ``Set("", value)`` sent inside takes *copy* and *encoded* as they are.

        For a whole tree checked, copied and (persisted) encoded off the
        loop, as :meth:`~stateward.Checkpoints.load` does: the tree takes
        *copy* without copying or comparing it, and the journal record
        takes *encoded*. The state is then frozen out of full garbage
        collections, as a freshly loaded one. After a send that applied, the
        tree it replaced and *value* (which its event carried) are freed in
        slices once nothing else holds them. Same event loop as the actor.
        """
        self.tree.offer(value, copy)
        self.whole = None if encoded is None else (value, encoded)
        replaced = self.tree.root
        try:
            yield
        finally:
            self.tree.withdraw()
            self.whole = None
            self.freezer.advance(self.tree.revision, now=True)
        self.reaper.hold(replaced)
        self.reaper.hold(value)

    def add_subscriber(self, sub: Subscriber) -> None:
        self.routes.add(sub)
        self.tg.start_soon(sub.run, name=f"stateward subscriber {sub.name!r}")

    def remove_subscriber(self, sub: Subscriber) -> None:
        self.routes.remove(sub)
        for delivery in [d for s, d in self.outbox if s is sub]:
            delivery.receipt._give_up(sub.name)
        self.outbox = [(s, d) for s, d in self.outbox if s is not sub]
        sub.close(drain=False)
