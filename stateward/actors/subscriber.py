"""Subscriber actors: one task, one bounded mailbox and one handler each.

The state actor puts one delivery per action into each matching subscriber's
mailbox (all the events of that action for this subscriber, same revision).
The subscriber's task takes deliveries in revision order, calls the handler
once per event, and posts one :class:`~stateward.Ack` per delivery: success
when every call succeeded, else the first failure.

When the mailbox is full, the **overflow policy** decides, and it is the only
way a subscriber can slow anyone else down:

* ``Overflow.BLOCK`` (default): the state actor waits up to ``block_timeout``
  seconds for room (backpressure: nothing lost while the subscriber keeps up
  within that bound). Past it, the policy falls back to dropping.
* ``Overflow.DROP``: never wait; drop.

Dropped deliveries are never a silent gap: from the first drop until the
subscriber has caught up, every further delivery is dropped too and counted,
and the subscriber then receives one :class:`~stateward.Resync` naming the
range it missed. The senders' reports list a subscriber whose delivery was
dropped under ``missing`` at once, without waiting for a timeout.

Memory per subscriber is bounded by ``mailbox_size`` deliveries.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Final

import anyio
import attrs

from ..messages.acks import RAS
from ..messages.events import Resync, StateChanged
from ._ack import current_subscriber
from ._handler import (
    NO_ANSWER,
    NO_ANSWER_CODE,
    Handler,
    must_await,
    must_propagate,
    ras_of,
    ras_of_error,
)
from ._handover import Handover
from ._subscriber_info import Overflow, SubscriberStatistics

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ..paths import Segments
    from ._ack import Receipt
    from ._delivery import _Delivery
    from ._mailbox import LoopEvent

__all__ = [
    "NO_ANSWER",
    "Handler",
    "Overflow",
    "Subscriber",
    "SubscriberStatistics",
]

logger = logging.getLogger(__name__)


_CLOSED: Final = object()
# A subscriber forces a checkpoint after this many deliveries, or once it has
# run this long since its last one, whichever comes first. The state actor
# hands it a whole batch at once: handling quick deliveries in one go, while
# their objects are young, keeps the garbage collector quiet (a bound of 16
# cost 10% of the throughput on asyncio), and the time slice keeps a slow
# sync handler from holding the event loop for 64 of its calls. A handler that
# awaits yields anyway.
_YIELD_EVERY: Final = 64
_TIME_SLICE: Final = 0.002  # seconds


@attrs.define(eq=False, repr=False)
class Subscriber:
    """A subscriber actor: its mailbox, its handler and the task that runs it.

    Made by :meth:`StateHandle.subscribe`; users hold a :class:`Subscription`.
    The state actor calls :meth:`put` in revision order; :meth:`run` is the
    subscriber's own task.
    """

    name: str
    pattern: str
    segments: Segments
    handler: Handler
    overflow: Overflow
    mailbox_size: int
    block_timeout: float
    handler_timeout: float | None
    stop_bubbling: bool
    new_signal: Callable[[], LoopEvent] = attrs.field(kw_only=True)
    """Makes the one-waiter events of its mailbox (see ``_mailbox``)."""
    on_exit: Callable[[BaseException], None] | None = attrs.field(
        kw_only=True, default=None
    )
    """Told of a handler's KeyboardInterrupt or SystemExit (the actor stops)."""
    literal: bool = attrs.field(init=False)
    _queue: deque[_Delivery] = attrs.field(init=False, factory=deque)
    # Deliveries replayed from the history (see replay()); made when needed:
    # an empty deque is 760 bytes, a tenth of a subscriber.
    _backlog: deque[_Delivery] | None = attrs.field(init=False, default=None)
    # History older than the ring, routed as it is taken (see replay()).
    _older: Iterator[_Delivery] | None = attrs.field(init=False, default=None)
    _resync: list[int] | None = attrs.field(init=False, default=None)
    _not_empty: LoopEvent | None = attrs.field(init=False, default=None)
    _not_full: LoopEvent | None = attrs.field(init=False, default=None)
    _closed: bool = attrs.field(init=False, default=False)
    _drain: bool = attrs.field(init=False, default=True)
    _scope: anyio.CancelScope | None = attrs.field(init=False, default=None)
    _current: _Delivery | None = attrs.field(init=False, default=None)
    _busy: bool = attrs.field(init=False, default=False)  # the task handles one
    _offer: Callable[[tuple[StateChanged, ...]], bool] | None = attrs.field(
        init=False, default=None
    )
    # Its task has ended; the event is made for a waiter only (as _backlog).
    _ended: bool = attrs.field(init=False, default=False)
    _finished: anyio.Event | None = attrs.field(init=False, default=None)
    _peak: int = attrs.field(init=False, default=0)
    _since_yield: int = attrs.field(init=False, default=0)
    _slice_start: float = attrs.field(init=False, default=0.0)
    _handled_at: float = attrs.field(init=False, default=0.0)
    _delivered: int = attrs.field(init=False, default=0)
    _dropped: int = attrs.field(init=False, default=0)
    _resyncs: int = attrs.field(init=False, default=0)
    _acks_ok: int = attrs.field(init=False, default=0)
    _acks_failed: int = attrs.field(init=False, default=0)
    _codes: dict[int, int] = attrs.field(init=False, factory=dict)
    _latency_total: float = attrs.field(init=False, default=0.0)
    _latency_max: float = attrs.field(init=False, default=0.0)

    def __attrs_post_init__(self) -> None:
        self.literal = not any(s in ("*", "**") for s in self.segments)
        if isinstance(self.handler, Handover):
            self._offer = self.handler.offer

    def __repr__(self) -> str:
        return (
            f"<Subscriber {self.name!r} pattern={self.pattern!r} "
            f"mailbox={len(self._queue)}/{self.mailbox_size} dropped={self._dropped}>"
        )

    # -- the state actor's side ---------------------------------------------

    def put_nowait(self, delivery: _Delivery) -> bool:
        """Queue or drop *delivery* without waiting.

        Returns:
            False only when the policy is BLOCK and the mailbox is full: the
            caller then awaits :meth:`put`.
        """
        if self._closed:
            delivery.receipt._give_up(self.name)
        elif self._resync is not None:
            self._drop(delivery)  # keep the gap contiguous until the Resync is taken
        elif (
            self._offer is not None
            and not (self._busy or self._queue or self._backlog or self._older)
            and self._offer(delivery.events)
        ):
            self._answered(delivery, 1, "")  # taken at once: its Ack now
        elif len(self._queue) < self.mailbox_size:
            delivery.queued_at = time.monotonic()
            self._queue.append(delivery)
            if len(self._queue) > self._peak:
                self._peak = len(self._queue)
            if self._not_empty is not None:
                self._not_empty.set()
                self._not_empty = None
        elif self.overflow is Overflow.DROP:
            self._drop(delivery)
        else:
            return False
        return True

    async def put(self, delivery: _Delivery) -> None:
        """Queue *delivery*, waiting up to ``block_timeout`` for room, else drop it."""
        with anyio.move_on_after(self.block_timeout):
            while not self.put_nowait(delivery):
                # A fresh signal per wait: one that timed out is never reused.
                self._not_full = signal = self.new_signal()
                await signal.wait()
            return
        logger.warning(
            "subscriber %r did not make room within %ss: dropping from revision %s on",
            self.name,
            self.block_timeout,
            delivery.revision,
        )
        self._drop(delivery)

    def replay(
        self, deliveries: list[_Delivery], older: Iterator[_Delivery] | None = None
    ) -> None:
        """Queue history to handle before the mailbox (``from_revision``).

        *older* (history rebuilt from the files, perhaps hundreds of
        thousands of revisions) comes first, made one delivery at a time as
        this subscriber's task takes them: routing it all here, at once,
        stopped the state's loop for 1.4 s at 200,000 revisions.

        Not bounded by ``mailbox_size`` (the history it comes from is) and
        never dropped: a resumed feed has no gap.
        """
        now = time.monotonic()
        for delivery in deliveries:
            delivery.queued_at = now
        if self._backlog is None:
            self._backlog = deque()
        self._backlog.extend(deliveries)
        if older is not None:
            self._older = _queued_at(older, now)

    def _drop(self, delivery: _Delivery) -> None:
        self._dropped += 1
        delivery.receipt._give_up(self.name)
        if self._resync is None:
            self._resync = [1, delivery.revision, delivery.revision]
        else:
            self._resync[0] += 1
            self._resync[2] = delivery.revision
        if self._not_empty is not None:  # an idle reader must learn of the gap
            self._not_empty.set()
            self._not_empty = None

    def close(self, *, drain: bool) -> None:
        """Stop taking deliveries; with *drain*, handle the queued ones first.

        Without *drain*, the running handler is cancelled and every queued
        delivery is given up (its senders see this subscriber as missing).
        """
        self._closed = True
        self._drain = self._drain and drain
        if not drain:
            if self._scope is not None:
                self._scope.cancel()
            self._give_up_queue()
        if self._not_empty is not None:
            self._not_empty.set()
            self._not_empty = None
        if self._not_full is not None:
            # A state actor waiting for room stops waiting: its retry finds
            # the subscriber closed and gives the delivery up.
            self._not_full.set()
            self._not_full = None

    def _give_up_queue(self) -> None:
        self._older = None  # (not routed yet: no receipt waits on them)
        while self._backlog:
            self._backlog.popleft().receipt._give_up(self.name)
        while self._queue:
            self._queue.popleft().receipt._give_up(self.name)

    def busy_with(self, receipt: Receipt) -> bool:
        """Whether *receipt* waits on this subscriber's Ack (never blocks)."""
        owner = receipt._owner
        return (
            owner is not None
            and owner.get(self.name) is self
            and self.name in (receipt._pending or ())
        )

    def idle(self) -> bool:
        """Whether nothing waits for, or runs in, the handler right now."""
        return not (
            self._older or self._backlog or self._queue or self._current or self._resync
        )

    async def wait_finished(self) -> None:
        """Wait until the subscriber's task has ended."""
        if self._ended:
            await anyio.lowlevel.checkpoint()
            return
        if self._finished is None:
            self._finished = anyio.Event()
        await self._finished.wait()

    def statistics(self) -> SubscriberStatistics:
        """Return a snapshot of the counters (never blocks)."""
        return SubscriberStatistics(
            name=self.name,
            pattern=self.pattern,
            queued=len(self._queue),
            mailbox_size=self.mailbox_size,
            peak=self._peak,
            delivered=self._delivered,
            dropped=self._dropped,
            resyncs=self._resyncs,
            acks_ok=self._acks_ok,
            acks_failed=self._acks_failed,
            acks_by_code=tuple(sorted(self._codes.items())),
            ack_latency_mean=(
                self._latency_total / self._delivered if self._delivered else 0.0
            ),
            ack_latency_max=self._latency_max,
        )

    # -- the subscriber's own task --------------------------------------------

    async def run(self) -> None:
        """Take deliveries in order and answer each with an Ack, until closed."""
        try:
            await self._run()
        except (KeyboardInterrupt, SystemExit) as exc:
            if self.on_exit is None:
                raise
            # Not raised in this task: on asyncio a KeyboardInterrupt leaving
            # any task but the root one leaves the event loop at once, with
            # no orderly stop. The state actor stops and raises it instead.
            self.on_exit(exc)

    async def _run(self) -> None:
        current_subscriber.set(self)
        try:
            with anyio.CancelScope() as self._scope:
                if self._closed and not self._drain:
                    return
                self._slice_start = time.monotonic()
                while True:
                    item = self._take()
                    if item is None:
                        self._since_yield = 0
                        waiter = self._not_empty = self.new_signal()
                        await waiter.wait()
                        self._slice_start = time.monotonic()
                        continue
                    if item is _CLOSED:
                        break
                    self._busy = True  # (a Handover's offer waits behind it)
                    if type(item) is Resync:
                        await self._handle_resync(item)
                    else:
                        await self._handle(item)  # type: ignore[arg-type]
                    self._busy = False
                    # A busy subscriber whose handler never blocks must still
                    # let every other task run (_YIELD_EVERY, _TIME_SLICE).
                    self._since_yield += 1
                    if (
                        self._since_yield >= _YIELD_EVERY
                        or self._handled_at - self._slice_start >= _TIME_SLICE
                    ):
                        self._since_yield = 0
                        await anyio.lowlevel.checkpoint()
                        self._slice_start = time.monotonic()
        finally:
            self._closed = True
            if self._current is not None:  # cancelled mid-delivery: it has no Ack
                self._current.receipt._give_up(self.name)
            self._give_up_queue()
            self._ended = True
            if self._finished is not None:
                self._finished.set()

    def _take(self) -> _Delivery | Resync | object | None:
        """The next thing to handle, ``_CLOSED``, or None when there is nothing."""
        if self._closed and not self._drain:
            return _CLOSED
        if self._older is not None:
            delivery = next(self._older, None)
            if delivery is not None:
                return delivery
            self._older = None
        if self._backlog:
            return self._backlog.popleft()
        queue = self._queue
        if queue:
            item = queue.popleft()
            # Wake a blocked state actor only once half the room is free:
            # waking it on every pop would make the two ping-pong.
            if self._not_full is not None and len(queue) <= self.mailbox_size // 2:
                self._not_full.set()
                self._not_full = None
            return item
        if self._resync is not None:
            count, first, last = self._resync
            self._resync = None
            return Resync(self.pattern, count, first, last)
        if self._closed:
            return _CLOSED
        return None

    async def _handle(self, delivery: _Delivery) -> None:
        self._current = delivery
        ras, message = 1, ""
        timeout = self.handler_timeout
        handler = self.handler
        for event in delivery.events:
            if timeout is None:
                # _invoke's body, without a coroutine of its own: this runs
                # once per event.
                try:
                    result = handler(event)
                    if must_await(result):
                        result = await result
                except Exception as exc:  # noqa: BLE001 - as in _invoke
                    code, text = ras_of_error(exc)
                except BaseException as exc:
                    if must_propagate(exc):
                        raise
                    code, text = ras_of_error(exc)
                else:
                    code, text = ras_of(result)
            else:
                code, text = await self._call(event)
            if code != 1 and ras == 1:
                ras, message = code, text
        self._handled_at = now = time.monotonic()  # also the time slice's clock
        latency = now - delivery.queued_at
        self._latency_total += latency
        if latency > self._latency_max:
            self._latency_max = latency
        self._answered(delivery, ras, message)
        self._current = None

    def _answered(self, delivery: _Delivery, ras: int, message: str) -> None:
        """Count *delivery* as handled and post its Ack (*ras*, *message*).

        From :meth:`_handle`, or at once for a delivery a :class:`Handover`
        took (its latency: none).
        """
        self._delivered += 1
        codes = self._codes
        codes[ras] = codes.get(ras, 0) + 1
        if ras == NO_ANSWER_CODE:
            # A proxy whose remote subscriber did not answer: missing, as a
            # local subscriber that never answers is.
            delivery.receipt._give_up(self.name)
            return
        if ras == 1:
            self._acks_ok += 1
        else:
            self._acks_failed += 1
        delivery.receipt._post(self.name, ras, message)

    async def _handle_resync(self, resync: Resync) -> None:
        self._resyncs += 1
        code, text = await self._call(resync)
        if code != 1:
            logger.warning(
                "subscriber %r failed to handle %r: %s", self.name, resync, text
            )

    async def _call(self, event: StateChanged | Resync) -> tuple[int, str]:
        """Run the handler on *event* within ``handler_timeout``: (code, message)."""
        if self.handler_timeout is None:
            return await self._invoke(event)
        with anyio.move_on_after(self.handler_timeout):
            return await self._invoke(event)
        return RAS.TIMEOUT, f"handler took longer than {self.handler_timeout}s"

    async def _invoke(self, event: StateChanged | Resync) -> tuple[int, str]:
        try:
            result = self.handler(event)
            if must_await(result):
                result = await result
        except Exception as exc:  # noqa: BLE001 - a handler's failure is its Ack; the subscriber keeps running
            return ras_of_error(exc)
        except BaseException as exc:
            if must_propagate(exc):
                raise
            return ras_of_error(exc)
        return ras_of(result)


def _queued_at(deliveries: Iterator[_Delivery], now: float) -> Iterator[_Delivery]:
    """*deliveries*, each marked queued at *now* (the history's join)."""
    for delivery in deliveries:
        delivery.queued_at = now
        yield delivery
