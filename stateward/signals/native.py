"""The state-signals protocol for new code: async, on trio or asyncio, no polling.

:func:`open_exporter` and :func:`open_responder` give objects shaped like
the reference's ``SignalExporter`` and ``SignalResponder`` (same method
names, same result codes, same wire messages, so they interoperate with
the reference library in either direction), but every call is awaited on
the event loop: no threads, and ``publish_signal`` returns the moment the
last response arrives instead of at the next 0.1 s poll.
"""

from __future__ import annotations

import contextlib
import logging
import math
import platform
from typing import TYPE_CHECKING, Any, final

import anyio

from .._checks import check_seconds
from .._errors import InvalidActionError, StatewardError
from ..messages.acks import ResultCode
from ..remote._redis import open_connection
from ..remote._tasks import background
from . import protocol
from .protocol import INITIALIZATION, SHUTDOWN, Response, Signal

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from ..remote._redis import Connection, Messages

__all__ = ["SignalExporter", "SignalResponder", "open_exporter", "open_responder"]

logger = logging.getLogger(__name__)


class _Wait:
    """One ``publish_signal`` waiting for its responders."""

    __slots__ = ("done", "event", "messages", "result", "to_check")

    def __init__(self, event: str, to_check: set[str]) -> None:
        self.event = event
        self.to_check = to_check
        self.result = ResultCode.ALL_SUBS_SUCCESS
        self.messages: dict[str, str] = {}
        self.done = anyio.Event()
        if not to_check:
            self.done.set()


@final
class SignalExporter:
    """Publishes signals, awaits its responders' answers (see :func:`open_exporter`).

    Methods are called from tasks of the event loop that opened it; several
    ``publish_signal`` calls may wait at once. Responses are matched to
    signals by (publisher id, event), as the protocol allows: two
    concurrent signals of the *same* event cannot be told apart, so an
    answer goes to the oldest one still waiting for that responder.
    """

    def __init__(self, conn: Connection, process_name: str, runner_host: str) -> None:
        self._conn = conn
        self.process_name = process_name
        """The name of the process the signals describe."""
        self.runner_host = runner_host
        """The host named in every signal."""
        self.pub_id = protocol.new_publisher_id(process_name)
        """This exporter's publisher id."""
        self.subs: set[str] = set()
        """The responder ids that answered ``initialization`` (or were expected)."""
        self.legal_events: list[str] | None = None
        """The events :meth:`publish_signal` accepts (after :meth:`initialize`)."""
        self.dropped = 0
        """Malformed messages seen on the response channel (logged, dropped)."""
        self._accepting = False
        self._waits: list[_Wait] = []
        self._joined = anyio.Event()

    def __repr__(self) -> str:
        return f"<SignalExporter {self.pub_id!r} subs={len(self.subs)}>"

    def _signal(
        self,
        event: str,
        sample: int = -1,
        tag: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Signal:
        # As the reference builds it: an empty tag or metadata is left out.
        return Signal(
            self.pub_id,
            self.process_name,
            event,
            self.runner_host,
            sample if sample else -1,
            tag or protocol.DEFAULT_TAG,
            metadata or None,
        )

    async def _read(self, messages: Messages) -> None:
        async for _, data in messages:
            try:
                response = protocol.parse_response(data)
            except StatewardError as exc:
                self.dropped += 1
                logger.warning("dropped a malformed response: %s", exc)
                continue
            if response.publisher_id != self.pub_id:
                continue
            self._take(response)

    def _take(self, response: Response) -> None:
        if response.event == INITIALIZATION:
            if self._accepting and response.responder_id not in self.subs:
                self.subs.add(response.responder_id)
                joined, self._joined = self._joined, anyio.Event()
                joined.set()
            return
        if response.ras is None:
            return  # the reference ignores an answer without a code
        for wait in self._waits:
            if wait.event == response.event and response.responder_id in wait.to_check:
                wait.to_check.discard(response.responder_id)
                if response.ras != 1:
                    wait.result = ResultCode.SUB_FAILED
                if response.message is not None:
                    wait.messages[response.responder_id] = response.message
                if not wait.to_check:
                    wait.done.set()
                return
        logger.warning(
            "a response from %r for %r that no signal waits for",
            response.responder_id,
            response.event,
        )

    async def initialize(
        self,
        legal_events: Sequence[str],
        tag: str | None = None,
        expected_resps: Sequence[str] | None = None,
    ) -> None:
        """Publish ``initialization``; from now on, responders that answer it are subs.

        Raises:
            InvalidActionError: *legal_events* is not a non-empty list of str.
        """
        self.legal_events = _names(legal_events, "legal_events")
        if expected_resps:
            self.subs.update(_names(expected_resps, "expected_resps"))
        self._accepting = True
        await self._conn.publish(
            protocol.SIGNALS, self._signal(INITIALIZATION, tag=tag).to_json()
        )

    async def initialize_and_wait(
        self,
        await_sub_count: int,
        legal_events: Sequence[str],
        tag: str | None = None,
        expected_resps: Sequence[str] | None = None,
        timeout: float = 60,
        periodic: bool = False,
    ) -> int:
        """:meth:`initialize`, then wait for *await_sub_count* subs.

        With *periodic*, ``initialization`` is published again every second
        for responders that start later. Returns 0 when they came, 1 when
        *timeout* seconds (-1 or None: no limit) passed first.
        """
        await self.initialize(legal_events, tag, expected_resps)
        signal = self._signal(INITIALIZATION, tag=tag).to_json()
        with anyio.move_on_after(_seconds(timeout)):
            while len(self.subs) < await_sub_count:
                joined = self._joined
                with anyio.move_on_after(1.0 if periodic else math.inf):
                    await joined.wait()
                    continue
                await self._conn.publish(protocol.SIGNALS, signal)
            return 0
        return 1

    async def publish_signal(
        self,
        event: str,
        sample: int = -1,
        tag: str | None = None,
        metadata: dict[str, Any] | None = None,
        timeout: float | None = 20,
    ) -> tuple[ResultCode, dict[str, str]]:
        """Publish *event* and wait for every sub's answer, up to *timeout* seconds.

        Returns ``(code, messages)``: ``ALL_SUBS_SUCCESS`` when every sub
        answered RAS 1 (at once when there are none), ``SUB_FAILED`` when
        all answered and one did not with 1, ``MISSING_RESPONSE`` when the
        timeout passed first (-1 or None: no timeout); *messages* maps
        responder ids to the messages they sent.

        Raises:
            InvalidActionError: *event* is reserved or not a legal event, or
                the signal is malformed (a wrong type, over the size cap).
        """
        if event in (INITIALIZATION, SHUTDOWN):
            reason = f"{event!r} is reserved: use initialize() or shutdown()"
            raise InvalidActionError("event", reason)
        if self.legal_events is not None and event not in self.legal_events:
            reason = f"{event!r} is not one of the legal events {self.legal_events}"
            raise InvalidActionError("event", reason)
        data = self._signal(event, sample, tag, metadata).to_json()
        wait = _Wait(event, set(self.subs) if self._accepting else set())
        self._waits.append(wait)
        try:
            await self._conn.publish(protocol.SIGNALS, data)
            with anyio.move_on_after(_seconds(timeout)):
                await wait.done.wait()
                return wait.result, dict(wait.messages)
            return ResultCode.MISSING_RESPONSE, dict(wait.messages)
        finally:
            self._waits.remove(wait)

    async def shutdown(self, tag: str | None = None) -> None:
        """Stop taking subs, forget them, and publish ``shutdown``."""
        self._accepting = False
        self.subs.clear()
        await self._conn.publish(
            protocol.SIGNALS, self._signal(SHUTDOWN, tag=tag).to_json()
        )


@final
class SignalResponder:
    """Receives signals and answers them (made by :func:`open_responder`).

    :meth:`listen` is iterated by one task; :meth:`respond` may be called
    from any task of the same event loop, at any time.
    """

    def __init__(self, conn: Connection, messages: Messages, name: str) -> None:
        self._conn = conn
        self._messages = messages
        self.responder_id = protocol.new_responder_id(name)
        """This responder's id (``<name>-<uuid4>-resp``)."""
        self.dropped = 0
        """Malformed messages seen on the signal channel (logged, dropped)."""
        self._locked_id: str | None = None
        self._locked_tag: str | None = None

    def __repr__(self) -> str:
        return f"<SignalResponder {self.responder_id!r}>"

    def listen(self) -> AsyncIterator[Signal]:
        """Iterate over every well-formed signal that passes the locks, in order.

        A plain async iterator (not a generator): leaving the loop early
        needs no ``aclosing``.
        """
        return _Signals(self)

    async def _next(self) -> Signal:
        async for _, data in self._messages:
            try:
                signal = protocol.parse_signal(data)
            except StatewardError as exc:
                self.dropped += 1
                logger.warning("dropped a malformed signal: %s", exc)
                continue
            if self._locked_id not in (None, signal.publisher_id):
                continue
            if self._locked_tag not in (None, signal.tag):
                continue
            return signal
        raise StopAsyncIteration

    async def respond(
        self,
        publisher_id: str,
        event: str,
        ras: int | None = None,
        message: str | None = None,
    ) -> None:
        """Answer *publisher_id*'s *event* (no *ras* for ``initialization``)."""
        response = Response(self.responder_id, publisher_id, event, ras, message)
        await self._conn.publish(protocol.RESPONSES, response.to_json())

    async def srespond(
        self, signal: Signal, ras: int | None = None, message: str | None = None
    ) -> None:
        """Answer *signal* (see :meth:`respond`)."""
        await self.respond(signal.publisher_id, signal.event, ras, message)

    def lock_id(self, publisher_id: str) -> None:
        """Take only the signals of *publisher_id*."""
        self._locked_id = _names([publisher_id], "publisher_id")[0]

    def lock_tag(self, tag: str) -> None:
        """Take only the signals tagged *tag*."""
        self._locked_tag = _names([tag], "tag")[0]

    def unlock(self) -> None:
        """Take every signal again."""
        self._locked_id = self._locked_tag = None


class _Signals:
    __slots__ = ("_responder",)

    def __init__(self, responder: SignalResponder) -> None:
        self._responder = responder

    def __aiter__(self) -> _Signals:
        return self

    async def __anext__(self) -> Signal:
        return await self._responder._next()


@contextlib.asynccontextmanager
async def open_exporter(
    url: str, process_name: str, *, runner_host: str | None = None
) -> AsyncIterator[SignalExporter]:
    """Connect an exporter for *process_name*; it listens for responses on entry.

    Raises:
        RemoteUnavailableError: Redis cannot be reached.
    """
    name = _names([process_name], "process_name")[0]
    host = platform.node() if runner_host is None else runner_host
    async with (
        open_connection(url, name="sw-signals-exporter") as conn,
        conn.listen([protocol.RESPONSES]) as messages,
        background() as tg,
    ):
        exporter = SignalExporter(conn, name, host)
        tg.start_soon(exporter._read, messages)
        yield exporter


@contextlib.asynccontextmanager
async def open_responder(
    url: str, name: str | None = None
) -> AsyncIterator[SignalResponder]:
    """Connect a responder named *name* (default: the host's), subscribed on entry.

    Raises:
        RemoteUnavailableError: Redis cannot be reached.
    """
    base = _names([platform.node() if name is None else name], "name")[0]
    async with (
        open_connection(url, name="sw-signals-responder") as conn,
        conn.listen([protocol.SIGNALS]) as messages,
    ):
        yield SignalResponder(conn, messages, base)


def _names(values: object, what: str) -> list[str]:
    if (
        not isinstance(values, (list, tuple))
        or not values
        or not all(type(v) is str and v for v in values)
    ):
        raise InvalidActionError(what, "must be a non-empty list of non-empty str")
    return list(values)


def _seconds(timeout: float | None) -> float:
    if timeout is None or (type(timeout) in (int, float) and timeout == -1):
        return math.inf  # (no limit, as state-signals has it)
    check_seconds("timeout", timeout)  # (a finite number >= 0: not NaN, not a str)
    return float(timeout)
