"""The state-signals bridge of a served state: unchanged peers on both sides.

``serve_redis(state, url, name=..., signals=Signals(...))`` runs it beside
the owner:

* **As a responder** (``respond_as``): an unchanged ``SignalExporter``
  sees one responder per exposed stateward subscriber. Each signal is
  applied as an action, in arrival order (``Set`` of ``<path>.<process>``,
  ``source`` the publisher id); each exposed subscriber's Ack goes back as
  that responder's response (its RAS code and message). A subscriber that
  did not answer sends nothing, so the exporter reports
  ``MISSING_RESPONSE`` itself.
* **As an exporter** (``export``): changes matching a pattern are published
  as signals; every unchanged ``SignalResponder`` that answers the
  (periodically re-published) ``initialization`` becomes a stateward
  subscriber named after its responder id, so its codes and messages reach
  the senders' AckReports, and one that does not answer is ``missing``.

Malformed messages on either channel are dropped with a logged reason and
counted; they never stop the bridge.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import platform
import uuid
from typing import TYPE_CHECKING, Any, Final, cast, final

import anyio
import attrs

from .._checks import check_int, check_seconds
from .._errors import (
    DuplicateNameError,
    InvalidActionError,
    RemoteUnavailableError,
    StateBrokenError,
    StateClosedError,
    StatewardError,
)
from ..actors._handler import NO_ANSWER
from ..messages.actions import Set
from ..messages.events import ChangeKind, Resync, StateChanged
from ..paths import parse_path, parse_pattern
from ..remote._redis import Backoff, open_connection
from . import protocol
from .protocol import INITIALIZATION, SHUTDOWN, Response, Signal

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ..actors._handler import Handler
    from ..actors.handle import StateHandle
    from ..actors.state import Receipt
    from ..remote._redis import Connection

__all__ = ["Signals", "SignalsBridge"]

logger = logging.getLogger(__name__)

_MEMO: Final = 4096  # signals remembered for responders still catching up
_INBOX: Final = 1024  # unclaimed responses kept per responder
# Exporters answered at once. One that stops without ``shutdown`` (killed, or
# a publisher id made up by anyone who can publish) is forgotten once this
# many newer ones have signalled, so a bridge that runs for months does not
# grow with every exporter that ever crashed.
MAX_EXPORTERS: Final = 4096


def _check_names(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, tuple) or not all(type(v) is str and v for v in value):
        reason = "must be subscriber names (non-empty str)"
        raise InvalidActionError(attr.name, reason)


@final
@attrs.frozen
class Signals:
    """What the state-signals bridge does; pass to ``serve_redis(signals=...)``.

    Immutable; one value may configure several servers.
    """

    respond_as: tuple[str, ...] = attrs.field(
        default=(), converter=tuple, validator=_check_names
    )
    """Stateward subscribers (local or remote, by name) that answer
    state-signals exporters: each is one responder to them. They should
    subscribe to ``<path>.**`` (or a pattern covering it)."""
    path: str = "signals"
    """Where signals land: ``<path>.<process_name>``."""
    record: bool = True
    """Apply every exporter's signals to the state (False: the bridge only
    exports, and ``respond_as`` must be empty)."""
    export: str | None = None
    """Publish the changes matching this pattern as signals (None: do not)."""
    ack_timeout: float = 30.0
    """Responder side: the longest the bridge waits for the subscribers' Acks."""
    response_timeout: float = 20.0
    """Exporter side: the longest a responder may take to answer one signal."""
    max_misses: int = 3
    """Exporter side: signals in a row a responder may miss before it is dropped."""
    reinitialize: float = 5.0
    """Exporter side: how often ``initialization`` is published again, so that
    responders that start later join."""

    def __attrs_post_init__(self) -> None:
        parse_path(self.path)
        if self.export is not None:
            parse_pattern(self.export)
        check_seconds("ack_timeout", self.ack_timeout, positive=True)
        check_seconds("response_timeout", self.response_timeout, positive=True)
        check_int("max_misses", self.max_misses, 1)
        check_seconds("reinitialize", self.reinitialize, positive=True)
        if not self.record and self.respond_as:
            reason = "needs record=True: the subscribers answer the signals' actions"
            raise InvalidActionError("respond_as", reason)

    def bridge(self, state: StateHandle, url: str, name: str) -> SignalsBridge:
        """The bridge of *state* served under *name* (``serve_redis`` starts it)."""
        return SignalsBridge(state, url, name, self)


@final
class SignalsBridge:
    """The running bridge (``server.signals``): its counters and responders.

    Counters are read without blocking; its work runs in the owner's task
    group.
    """

    def __init__(
        self, state: StateHandle, url: str, name: str, config: Signals
    ) -> None:
        self._state = state
        self._url = url
        self.config = config
        """The configuration it runs with."""
        self._run = uuid.uuid4()
        self.responder_ids = {
            sub: f"{sub}-{self._run}-resp" for sub in config.respond_as
        }
        """The responder id of each exposed subscriber (stable for this run)."""
        self._by_responder = {rid: sub for sub, rid in self.responder_ids.items()}
        self.pub_id = protocol.new_publisher_id(name)
        """The publisher id of the exporter side."""
        self._process = name
        self._host = platform.node()
        self.exporters: collections.OrderedDict[str, str] = collections.OrderedDict()
        """Exporters that initialized with the bridge: publisher id → process
        name, the least recently heard from first (at most
        :data:`MAX_EXPORTERS`; the oldest is forgotten for a new one)."""
        self.responders: dict[str, _Responder] = {}
        """Responders that joined the exporter side, by responder id."""
        self.applied = 0
        """Signals applied to the state."""
        self.dropped = 0
        """Malformed messages seen on either channel (logged, dropped)."""
        self.reconnects = 0
        """Times the bridge reconnected after Redis went away (pub/sub is at
        most once: what was published meanwhile is lost to it)."""
        self._conn: Connection | None = None
        self._memo: collections.OrderedDict[
            tuple[int, str], tuple[int, str, anyio.Event]
        ] = collections.OrderedDict()
        self._tick = 0
        self._tg: TaskGroup | None = None
        self._started = False
        self._backoff = Backoff()
        self._joining: set[str] = set()  # responders being subscribed

    def __repr__(self) -> str:
        return (
            f"<SignalsBridge applied={self.applied} exporters={len(self.exporters)} "
            f"responders={len(self.responders)} dropped={self.dropped}>"
        )

    # -- the loop ----------------------------------------------------------

    async def run(self, tg: TaskGroup, *, task_status: Any) -> None:
        """Listen on both channels; reconnect with backoff after a loss."""
        self._tg = tg
        try:
            while True:
                try:
                    await self._listen(task_status)
                except RemoteUnavailableError as exc:
                    self._conn = None
                    if not self._started:
                        raise
                    self.reconnects += 1
                    logger.warning("signals: Redis went away (%s); reconnecting", exc)
                    await self._backoff.wait()
        finally:
            # However it stops (cancelled, or an error), the responders hear
            # it, and their stand-ins leave the state.
            with anyio.CancelScope(shield=True):
                await self._shutdown()
                for responder in list(self.responders.values()):
                    await responder.leave("the bridge stopped", quiet=True)

    async def _listen(self, task_status: Any) -> None:
        channels = [protocol.SIGNALS, protocol.RESPONSES]
        async with (
            open_connection(self._url, name="sw-signals") as conn,
            conn.listen(channels) as messages,
            anyio.create_task_group() as inner,
        ):
            self._conn = conn
            self._backoff.reset()
            if self.config.export is not None:
                inner.start_soon(self._initialize_periodically, conn)
            if not self._started:
                self._started = True
                task_status.started()
            async for channel, data in messages:
                if channel == protocol.SIGNALS:
                    await self._on_signal(data)
                else:
                    self._on_response(data)

    async def _shutdown(self) -> None:
        """Tell the responders the exporter side stops (best effort, 2 s at most).

        On a connection of its own: the bridge's went down with the
        cancellation that stops it.
        """
        if self.config.export is None:
            return
        data = self._signal(SHUTDOWN, -1, None).to_json()
        try:
            with anyio.fail_after(2):
                async with open_connection(self._url, name="sw-signals") as conn:
                    await conn.publish(protocol.SIGNALS, data)
        except (StatewardError, TimeoutError) as exc:
            logger.warning("signals: shutdown not published: %s", exc)

    # -- responder side: exporters' signals become actions -------------------

    async def _on_signal(self, data: bytes) -> None:
        try:
            signal = protocol.parse_signal(data)
        except StatewardError as exc:
            self._drop("signal", exc)
            return
        if signal.publisher_id == self.pub_id or not self.config.record:
            return  # our own (the exporter side), or not asked to
        value: dict[str, Any] = {
            "event": signal.event,
            "sample_no": signal.sample_no,
            "tag": signal.tag,
            "runner_host": signal.runner_host,
            "publisher_id": signal.publisher_id,
        }
        if signal.metadata is not None:
            value["metadata"] = signal.metadata
        try:
            # eq=False: a repeated signal is a new change, answered again.
            action = Set(
                (*parse_path(self.config.path), signal.process_name),
                value,
                source=signal.publisher_id,
                eq=False,
            )
            receipt = await self._state.send(action)
        except StatewardError as exc:
            self._drop("signal", exc)
            return
        self.applied += 1
        if signal.event == INITIALIZATION:
            self._remember(signal)
            for rid in self.responder_ids.values():
                await self._respond(Response(rid, signal.publisher_id, INITIALIZATION))
        elif signal.event == SHUTDOWN:
            self.exporters.pop(signal.publisher_id, None)
        elif signal.publisher_id in self.exporters:
            self.exporters.move_to_end(signal.publisher_id)
            if self.responder_ids:
                assert self._tg is not None
                self._tg.start_soon(self._answer, signal, receipt)

    def _remember(self, signal: Signal) -> None:
        """Answer *signal*'s exporter from now on; forget the oldest past the bound."""
        self.exporters[signal.publisher_id] = signal.process_name
        self.exporters.move_to_end(signal.publisher_id)
        if len(self.exporters) > MAX_EXPORTERS:
            pub_id, process = self.exporters.popitem(last=False)
            logger.warning(
                "signals: exporter %r (%s) forgotten: %d newer exporters signalled "
                "since it did, and it never published shutdown",
                process,
                pub_id,
                MAX_EXPORTERS,
            )

    async def _answer(self, signal: Signal, receipt: Receipt) -> None:
        report = await receipt.acks(timeout=self.config.ack_timeout)
        for ack in report.acks:
            rid = self.responder_ids.get(ack.subscriber)
            if rid is not None:
                response = Response(
                    rid, signal.publisher_id, signal.event, ack.ras, ack.message or None
                )
                await self._respond(response)

    async def _respond(self, response: Response) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            await conn.publish(protocol.RESPONSES, response.to_json())
        except StatewardError as exc:
            logger.warning("signals: a response was not published: %s", exc)

    # -- exporter side: changes become signals, responders subscribers --------

    def _signal(
        self, event: str, sample: int, metadata: dict[str, Any] | None
    ) -> Signal:
        return Signal(
            self.pub_id,
            self._process,
            event,
            self._host,
            sample,
            self._process,
            metadata,
        )

    async def _initialize_periodically(self, conn: Connection) -> None:
        data = self._signal(INITIALIZATION, -1, None).to_json()
        while True:
            try:
                await conn.publish(protocol.SIGNALS, data)
            except RemoteUnavailableError:
                return  # the listener sees the loss too, and reconnects
            await anyio.sleep(self.config.reinitialize)

    def _on_response(self, data: bytes) -> None:
        try:
            response = protocol.parse_response(data)
        except StatewardError as exc:
            self._drop("response", exc)
            return
        if response.publisher_id != self.pub_id or self.config.export is None:
            return
        rid = response.responder_id
        if response.event == INITIALIZATION:
            known = rid in self.responders or rid in self._joining
            if not known and rid not in self._by_responder:
                assert self._tg is not None
                self._joining.add(rid)
                self._tg.start_soon(_Responder(self, rid).join)
            return
        responder = self.responders.get(rid)
        if responder is None or response.ras is None:
            return
        self._tick += 1
        inbox = responder.inbox
        inbox.append((self._tick, response.event, response.ras, response.message))
        if len(inbox) > _INBOX:
            inbox.popleft()
        responder.arrived.set()
        responder.arrived = anyio.Event()

    async def signal_for(self, event: StateChanged) -> tuple[int, str]:
        """Publish *event*'s signal once for all responders; (tick, event name)."""
        key = (event.revision, event.path)
        memo = self._memo.get(key)
        if memo is None:
            self._tick += 1
            name = _event_name(event)
            published = anyio.Event()
            memo = self._memo[key] = (self._tick, name, published)
            if len(self._memo) > _MEMO:
                self._memo.popitem(last=False)
            metadata = {
                "revision": event.revision,
                "path": event.path,
                "kind": event.kind.value,
                "action_id": event.action_id,
                "value": event.new_value,
            }
            signal = self._signal(name, event.revision, metadata)
            try:
                conn = self._conn
                if conn is not None:
                    await conn.publish(protocol.SIGNALS, signal.to_json())
            except StatewardError as exc:
                logger.warning(
                    "signals: revision %d not published: %s", event.revision, exc
                )
            finally:
                published.set()
        tick, name, published = memo
        await published.wait()
        return tick, name

    def _drop(self, what: str, exc: Exception) -> None:
        self.dropped += 1
        logger.warning("signals: dropped a malformed %s: %s", what, str(exc)[:300])


class _Responder:
    """An unchanged ``SignalResponder`` as a stateward subscriber."""

    def __init__(self, bridge: SignalsBridge, responder_id: str) -> None:
        self.bridge = bridge
        self.responder_id = responder_id
        self.inbox: collections.deque[tuple[int, str, int, str | None]] = (
            collections.deque()
        )
        self.arrived = anyio.Event()
        self.misses = 0
        self.subscription: Any = None

    def __repr__(self) -> str:
        return f"<responder {self.responder_id!r} misses={self.misses}>"

    async def join(self) -> None:
        bridge = self.bridge
        assert bridge.config.export is not None
        try:
            self.subscription = await bridge._state.subscribe(
                bridge.config.export, cast("Handler", self), name=self.responder_id
            )
        except (DuplicateNameError, StatewardError) as exc:
            logger.warning(
                "signals: responder %r not added: %s", self.responder_id, exc
            )
            return
        finally:
            bridge._joining.discard(self.responder_id)
        # Listed once subscribed: from now on every change reaches it.
        bridge.responders[self.responder_id] = self
        logger.info("signals: responder %r joined", self.responder_id)

    async def __call__(self, event: StateChanged | Resync) -> object:
        if isinstance(event, Resync):
            return None
        tick, name = await self.bridge.signal_for(event)
        with anyio.move_on_after(self.bridge.config.response_timeout):
            while True:
                answer = self._claim(tick, name)
                if answer is not None:
                    self.misses = 0
                    ras, message = answer
                    return (ras, message or "")
                await self.arrived.wait()
        self.misses += 1
        if self.misses >= self.bridge.config.max_misses:
            bridge = self.bridge
            assert bridge._tg is not None
            bridge._tg.start_soon(
                self.leave, f"{self.misses} signals in a row unanswered"
            )
        return NO_ANSWER

    def _claim(self, tick: int, name: str) -> tuple[int, str | None] | None:
        """The first answer to *name* that came after its signal went out."""
        for item in self.inbox:
            arrived, event, ras, message = item
            if arrived > tick and event == name:
                self.inbox.remove(item)
                return ras, message
        return None

    async def leave(self, why: str, *, quiet: bool = False) -> None:
        bridge = self.bridge
        if bridge.responders.get(self.responder_id) is not self:
            return
        del bridge.responders[self.responder_id]
        if not quiet:
            logger.warning("signals: responder %r dropped: %s", self.responder_id, why)
        if self.subscription is not None:
            with anyio.CancelScope(shield=True):
                with contextlib.suppress(StateClosedError, StateBrokenError):
                    await self.subscription.unsubscribe()


def _event_name(event: StateChanged) -> str:
    """A change's event: its new value when that is a short str, else its path."""
    value = event.new_value
    if (
        event.kind is not ChangeKind.DELETED
        and type(value) is str
        and 0 < len(value) <= 256
        and value not in (INITIALIZATION, SHUTDOWN)
    ):
        return value
    return event.path or "."
