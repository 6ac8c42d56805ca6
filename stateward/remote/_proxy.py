"""The owner's remote subscribers: each one's stand-in, and their registry.

A :class:`Proxy` is a local subscriber's handler that relays each event to
the remote subscriber's delivery stream and answers with its Ack;
:class:`Proxies` adds and drops them at clients' requests and hands each
Ack read from Redis to the proxy waiting for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any, Final, cast

import anyio

from .._errors import (
    CompactedError,
    InvalidActionError,
    RemoteUnavailableError,
    StateBrokenError,
    StateClosedError,
    StatewardError,
)
from .._json import surely_larger
from ..actors._handler import NO_ANSWER
from ..messages.events import Resync, StateChanged
from . import protocol
from ._deliveries import decode_ack, encode_event
from ._redis import BLOCK_MS, Backoff, open_connection
from ._replies import REPLY_MAXLEN

if TYPE_CHECKING:
    from ..actors._handler import Handler
    from .server import RedisServer

__all__ = ["Proxies", "Proxy"]

logger = logging.getLogger(__name__)


IDLE_FLOOR: Final = 300.0
"""Seconds a remote subscriber's client may go without registering it again
(every ``refresh`` seconds) before the owner drops it: longer still when
its refreshes come further apart."""


class Proxy:
    """A remote subscriber's stand-in at the owner: a local subscriber's handler.

    Each event goes to the remote subscriber's delivery stream; the proxy
    waits for its Ack up to *timeout* and answers with it, so the remote
    subscriber's codes reach every sender's receipt as a local one's do. No
    Ack in time: the delivery is reported missing; after ``MISSES`` in a row
    the remote subscriber is dropped with a warning.
    """

    MISSES: Final = 3

    def __init__(
        self, server: RedisServer, client: str, name: str, timeout: float
    ) -> None:
        self.server = server
        self.client = client
        self.name = name
        self.timeout = timeout
        self.epoch = os.urandom(6).hex()
        self.seq = 0
        self.misses = 0
        self.closed = False
        self.subscription: Any = None
        self.waiting: dict[int, anyio.Event] = {}
        self.answers: dict[int, tuple[int, str]] = {}
        self.redelivered = 0  # events sent again after Redis went away
        # Its client registers it again every `refresh` seconds: the longest
        # gap seen, and when it last did (see Proxies.expire_idle).
        self.renewed = anyio.current_time()
        self.period = 0.0

    def renew(self) -> None:
        """Its client registered it again: it lives (and at about what pace)."""
        now = anyio.current_time()
        self.period = max(self.period, now - self.renewed)
        self.renewed = now

    def _encode(self, seq: int, event: object) -> dict[bytes, bytes]:
        """*event* as a delivery; one too large to cross, as a Resync for it.

        A change whose values pass the message cap (a large subtree
        replaced, say) cannot reach the remote subscriber: it is told at
        once to re-read instead, never left with a silent gap.
        """
        if isinstance(event, StateChanged):
            cap = protocol.MAX_MESSAGE_BYTES
            if not (
                surely_larger(event.new_value, cap)
                or surely_larger(event.old_value, cap)
            ):
                with contextlib.suppress(InvalidActionError):
                    return encode_event(self.name, self.epoch, seq, event)
            pattern = self.subscription.pattern if self.subscription else ""
            event = Resync(pattern, 1, event.revision, event.revision)
        return encode_event(self.name, self.epoch, seq, event)

    async def __call__(self, event: object) -> object:
        server = self.server
        if self.closed:
            return NO_ANSWER
        self.seq += 1
        seq = self.seq
        waiter = self.waiting[seq] = anyio.Event()
        fields = self._encode(seq, event)
        try:
            with anyio.move_on_after(self.timeout):
                # Delivered again when Redis went away meanwhile (the event may
                # have been lost with it); the client answers a repeat once.
                while not waiter.is_set():
                    losses = server.reconnects + server.redis_losses
                    writer = server._writer
                    try:
                        if writer is None:
                            raise RemoteUnavailableError("not connected")
                        await writer.xadd(
                            server.keys.deliver(self.name), fields, maxlen=REPLY_MAXLEN
                        )
                    except RemoteUnavailableError:
                        await anyio.sleep(0.1)  # the owner reconnects meanwhile
                        continue
                    while not waiter.is_set():
                        with anyio.move_on_after(0.5):
                            await waiter.wait()
                        if server.reconnects + server.redis_losses != losses:
                            self.redelivered += 1
                            break
            answer = self.answers.pop(seq, None)
        finally:
            self.waiting.pop(seq, None)
        if answer is None:
            self.misses += 1
            if self.misses >= self.MISSES and not self.closed:
                why = f"{self.misses} events in a row without an Ack"
                assert server._tg is not None  # set before any subscriber exists
                server._tg.start_soon(server._proxies.drop, self, why)
            return NO_ANSWER
        self.misses = 0
        return answer


class Proxies:
    """The owner's remote subscribers, by name; made and run by the server.

    Concurrency: the owner's event loop only; :meth:`read_acks` runs as a
    task of the server's task group for as long as it serves.
    """

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.by_name: dict[str, Proxy] = {}
        self.forged_acks = 0

    async def request(self, request: protocol.Request) -> dict[str, Any]:
        """Add (idempotently) or remove the proxy of a remote subscriber."""
        name = request.subscriber
        proxy = self.by_name.get(name)
        if proxy is not None and proxy.client != request.client:
            reason = f"subscriber {name!r} belongs to another client"
            return {"kind": "refused", "field": "subscriber", "reason": reason}
        if request.op == "unsubscribe":
            if proxy is not None and await self._remove(proxy):
                logger.info("remote subscriber %r unsubscribed", name)
            return {"kind": "unsubscribed"}
        created = False
        if proxy is not None and not proxy.closed:
            proxy.renew()
        else:
            created = True
            proxy = Proxy(self.server, request.client, name, request.timeout)
            try:
                proxy.subscription = await self.server._state.subscribe(
                    request.pattern,
                    cast("Handler", proxy),
                    name=name,
                    mailbox_size=256,
                    from_revision=request.from_revision,
                )
            except CompactedError as exc:
                return {
                    "kind": "refused",
                    "error": "CompactedError",
                    "requested": exc.requested,
                    "oldest": exc.oldest,
                }
            except StatewardError as exc:
                return {"kind": "refused", "field": "subscriber", "reason": str(exc)}
            self.by_name[name] = proxy
        revision = self.server._state.revision
        if created:
            # Where its events start: it delivers every change after it.
            revision = proxy.subscription.start_revision
        return {
            "kind": "subscribed",
            "revision": revision,
            "epoch": proxy.epoch,
            # A new proxy may have sent its first (replayed) events already:
            # the client takes every event of this epoch.
            "seq": 0,
        }

    async def drop(self, proxy: Proxy, why: str) -> None:
        """Remove *proxy* and its local subscriber, and say *why* (once)."""
        if await self._remove(proxy):
            logger.warning("remote subscriber %r dropped: %s", proxy.name, why)

    async def close(self) -> None:
        """The server stops: remove every proxy, and its local subscriber.

        Left subscribed, a proxy would go on taking the state's events with
        no server to relay them: its mailbox would fill and hold up every
        write, and its name would keep the remote subscriber from coming
        back when the state is served again.
        """
        for proxy in list(self.by_name.values()):
            await self._remove(proxy)

    async def _remove(self, proxy: Proxy) -> bool:
        if proxy.closed:
            return False
        proxy.closed = True
        self.by_name.pop(proxy.name, None)
        for waiter in proxy.waiting.values():
            waiter.set()
        if proxy.subscription is not None:
            with anyio.CancelScope(shield=True):
                with contextlib.suppress(StateClosedError, StateBrokenError):
                    await proxy.subscription.unsubscribe()
        return True

    async def expire_idle(self) -> None:
        """Drop the proxies their clients stopped registering (its own task).

        A client that dies (killed, not closed) leaves its subscribers: one
        that gets events is dropped after ``MISSES`` unanswered ones, but one
        whose pattern sees no change would stay for as long as the owner
        serves. A live client registers each of its subscribers every
        ``refresh`` seconds; one not heard of for :data:`IDLE_FLOOR` seconds
        and for four of the longest gaps seen is gone. Should its client
        come back after all, its next registration makes a new proxy, and
        the handler is told what it missed (a ``Resync``).
        """
        while True:
            await anyio.sleep(IDLE_FLOOR / 10)
            now = anyio.current_time()
            for proxy in list(self.by_name.values()):
                idle = now - proxy.renewed
                if idle > max(IDLE_FLOOR, 4 * proxy.period):
                    why = f"its client has not registered it for {idle:.0f} s"
                    await self.drop(proxy, why)

    async def read_acks(self) -> None:
        """Hand each remote Ack to the proxy waiting for it (its own task)."""
        last = b"$"
        backoff = Backoff()
        while True:
            try:
                async with open_connection(
                    self.server._url, name="sw-owner-acks"
                ) as conn:
                    backoff.reset()
                    while True:
                        entries = await conn.xread(
                            self.server.keys.acks, last, count=256, block_ms=BLOCK_MS
                        )
                        for entry_id, fields in entries:
                            last = entry_id
                            self.take_ack(fields)
            except RemoteUnavailableError:
                await backoff.wait()

    def take_ack(self, fields: object) -> None:
        """Hand one Ack read from Redis to its proxy; count it if it is forged."""
        try:
            client, name, seq, ras, message = decode_ack(fields)
        except StatewardError:
            self.forged_acks += 1
            return
        proxy = self.by_name.get(name)
        waiter = None if proxy is None else proxy.waiting.get(seq)
        if proxy is None or waiter is None or proxy.client != client:
            self.forged_acks += 1  # for nothing asked, or from another client
            return
        proxy.answers[seq] = (ras, message)
        waiter.set()
