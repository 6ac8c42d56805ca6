"""The owner's stand-in for a remote subscriber: a local subscriber's handler."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any, Final

import anyio

from .._errors import InvalidActionError, RemoteUnavailableError
from ..actors._handler import NO_ANSWER
from ..messages.events import Resync, StateChanged
from . import protocol
from ._replies import REPLY_MAXLEN
from ._size import over_cap

if TYPE_CHECKING:
    from .server import RedisServer

__all__ = ["Proxy"]


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

    def _encode(self, seq: int, event: object) -> dict[bytes, bytes]:
        """*event* as a delivery; one too large to cross, as a Resync for it.

        A change whose values pass the message cap (a large subtree
        replaced, say) cannot reach the remote subscriber: it is told at
        once to re-read instead, never left with a silent gap.
        """
        if isinstance(event, StateChanged):
            if not (over_cap(event.new_value) or over_cap(event.old_value)):
                with contextlib.suppress(InvalidActionError):
                    return protocol.encode_event(self.name, self.epoch, seq, event)
            pattern = self.subscription.pattern if self.subscription else ""
            event = Resync(pattern, 1, event.revision, event.revision)
        return protocol.encode_event(self.name, self.epoch, seq, event)

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
                server._tg.start_soon(server._drop, self, why)
            return NO_ANSWER
        self.misses = 0
        return answer
