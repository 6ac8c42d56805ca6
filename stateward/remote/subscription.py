"""A subscriber of a remote state that runs in this process.

:meth:`RemoteState.subscribe <stateward.remote.RemoteState.subscribe>`
registers a proxy at the owner, which relays the owner's deliveries to a
stream of this subscriber's own; :class:`RemoteSubscription` reads that
stream, calls the handler once per delivery, and answers with the Ack the
owner's sender waits for. A delivery seen again (Redis went away before
the Ack arrived) is answered again, not handled twice; deliveries lost on
the way come as one :class:`~stateward.Resync`.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any, final

import anyio

from .._errors import RemoteUnavailableError, StatewardError
from ..actors._handler import must_await, must_propagate, ras_of, ras_of_error
from ..actors._util import NoPublicConstructor
from ..messages.events import Resync, StateChanged
from . import protocol
from ._deliveries import decode_event
from ._redis import BLOCK_MS, Backoff, open_connection

if TYPE_CHECKING:
    from ..actors._handler import Handler
    from ._redis import Connection
    from .client import RemoteState

__all__ = ["RemoteSubscription"]

logger = logging.getLogger(__name__)


@final
class RemoteSubscription(metaclass=NoPublicConstructor):
    """A subscriber of the owner's state that runs in this process.

    Made by :meth:`RemoteState.subscribe`.

    Attributes:
        name: The subscriber's name at the owner (in receipts and reports).
        handled: Events handled (and answered) so far.
    """

    def __init__(self, state: RemoteState, name: str) -> None:
        self._state = state
        self.name = name
        self.handled = 0
        self._epoch = ""
        self._after = 0
        self._revision = 0  # of the last event handled (or the start)
        # Revisions a new proxy (the owner served again) did not deliver:
        # told to the handler as a Resync before anything else.
        self._gap: tuple[int, int] | None = None
        self._refreshing: anyio.Event | None = None  # set once a registration ends
        self._answered: dict[str, Any] | None = None  # the last Ack sent
        self._pattern = ""  # canonical: set by RemoteState.subscribe
        self._scope: anyio.CancelScope | None = None

    def __repr__(self) -> str:
        return f"<RemoteSubscription {self.name!r} handled={self.handled}>"

    async def unsubscribe(self) -> None:
        """Stop handling, and remove the subscriber at the owner."""
        request_id, message = self._stop()
        await self._state._request(request_id, message, 10.0)

    def _stop(self) -> tuple[str, dict[str, Any]]:
        """Stop handling here; the request that removes it at the owner."""
        if self._scope is not None:
            self._scope.cancel()
        self._state._subscriptions.pop(self.name, None)
        request_id = protocol.new_request_id()
        message = {
            "v": protocol.PROTOCOL_VERSION,
            "op": "unsubscribe",
            "id": request_id,
            "client": self._state.client,
            "subscriber": self.name,
        }
        return request_id, message

    async def _run(self, handler: Handler, timeout: float, refresh: float) -> None:
        state = self._state
        keys = state._keys
        with anyio.CancelScope() as self._scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._refresh, timeout, refresh)
                last = b"0-0"
                backoff = Backoff()
                while True:
                    try:
                        async with open_connection(state._url) as conn:
                            while True:
                                entries = await conn.xread(
                                    keys.deliver(self.name),
                                    last,
                                    count=64,
                                    block_ms=BLOCK_MS,
                                )
                                await self._tell_gap(handler)
                                for entry_id, fields in entries:
                                    last = entry_id
                                    await self._deliver(conn, handler, fields)
                                backoff.reset()
                    except RemoteUnavailableError:
                        await backoff.wait()

    async def _deliver(
        self, conn: Connection, handler: Handler, fields: object
    ) -> None:
        try:
            _, epoch, seq, event = decode_event(fields)
        except StatewardError as exc:
            logger.warning("ignoring a malformed delivery: %s", exc)
            return
        if epoch != self._epoch and self._refreshing is not None:
            # A new proxy answers a registration whose reply may come after
            # its first delivery: wait for the reply, then judge the epoch.
            await self._refreshing.wait()
        if epoch != self._epoch or seq < self._after:
            return  # an older proxy's, or from before we subscribed
        if seq == self._after:
            # Delivered again (Redis went away before our Ack reached the
            # owner): answer it again, do not handle it twice.
            if self._answered is not None and self._answered["seq"] == seq:
                await self._ack(conn, self._answered)
            return
        await self._tell_gap(handler)  # (a new proxy's gap comes before its events)
        lost = seq - self._after - 1
        if lost > 0 and self._after:
            # Deliveries lost on the way (never silently): after the last
            # revision seen (or said lost), before this one.
            if isinstance(event, StateChanged):
                await self._handle(
                    handler,
                    Resync(self._pattern, lost, self._revision + 1, event.revision - 1),
                )
            elif isinstance(event, Resync):  # one Resync says both
                event = Resync(
                    event.pattern,
                    event.dropped + lost,
                    min(event.first_revision, self._revision + 1),
                    event.last_revision,
                )
        self._after = seq
        if isinstance(event, StateChanged):
            self._revision = event.revision
        elif isinstance(event, Resync):  # (the owner's: a change too large)
            self._revision = max(self._revision, event.last_revision)
        code, text = await self._handle(handler, event)
        ack = {
            "client": self._state.client,
            "sub": self.name,
            "seq": seq,
            "ras": int(code),
            "message": text,
        }
        self.handled += 1
        self._answered = ack
        await self._ack(conn, ack)

    async def _handle(self, handler: Handler, event: object) -> tuple[int, str]:
        try:
            result = handler(event)  # type: ignore[arg-type]
            if must_await(result):
                result = await result
        except BaseException as exc:  # a handler's failure is its Ack, as locally
            if must_propagate(exc):
                raise
            code, text = ras_of_error(exc)
        else:
            code, text = ras_of(result)
        return int(code), text

    async def _ack(self, conn: Connection, ack: dict[str, Any]) -> None:
        with contextlib.suppress(RemoteUnavailableError):
            await conn.xadd(self._state._keys.acks, protocol.encode(ack), maxlen=10_000)

    async def _refresh(self, timeout: float, refresh: float) -> None:
        while True:
            await anyio.sleep(refresh)
            self._refreshing = anyio.Event()
            try:
                await self._register_again(timeout)
            finally:
                self._refreshing.set()
                self._refreshing = None

    async def _register_again(self, timeout: float) -> None:
        with contextlib.suppress(StatewardError):
            reply = await self._state._subscribe_request(self, timeout)
            if reply["epoch"] != self._epoch:  # a new owner: a new proxy
                self._epoch, self._after = reply["epoch"], reply["seq"]
                # It delivers what comes after its start: what came
                # between the last event given and that start, no proxy
                # delivered (the owner was not serving).
                start = reply["revision"]
                if start > self._revision:
                    first = self._revision + 1
                    if self._gap is not None:
                        first = self._gap[0]
                    self._gap = (first, start)
                    self._revision = start

    async def _tell_gap(self, handler: Handler) -> None:
        """Give the handler the Resync of a gap a new proxy left, if any."""
        if self._gap is None:
            return
        first, last = self._gap
        self._gap = None
        # At most one delivery per revision: the count is an upper bound.
        await self._handle(
            handler, Resync(self._pattern, last - first + 1, first, last)
        )
