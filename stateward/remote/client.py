"""The remote handle: the local handle's send, acks and get, from another process.

``async with connect_redis(url, name="jobs") as state:`` gives a
:class:`RemoteState`. ``await state.send(Set(...))`` returns once the owner
has applied the action (and, for a durable send, journaled it), with a
:class:`RemoteReceipt` carrying the revision; ``await receipt.acks(timeout)``
gives every subscriber's Ack, exactly as a local receipt does.

Delivery: the request is added to the owner's stream and, while no answer
comes, added again every ``resend_after`` seconds with the same id; Redis
going away is waited out. The owner applies each id at most once, so a send
that returns was applied exactly once.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any, Final, cast, final

import anyio

from .._checks import check_bool, check_int, check_seconds
from .._errors import (
    InvalidActionError,
    RemoteError,
    RemoteTimeoutError,
    RemoteUnavailableError,
    StatewardError,
)
from .._json import own_json
from ..actors._util import NoPublicConstructor
from ..messages.acks import Ack, AckReport, ResultCode
from ..messages.actions import Action
from ..messages.events import Resync, StateChanged
from ..paths import PathLike, PatternTrie, format_path, parse_path, parse_pattern
from . import protocol
from ._keys import unique_name
from ._redis import BLOCK_MS, Backoff, open_connection
from ._replies import decode_reply, id_of, refusal_error
from ._tasks import background
from ._watch import pump_feed
from .subscription import RemoteSubscription

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator

    from .._json import JSON
    from ..actors._handler import Handler
    from ._redis import Connection

__all__ = ["RemoteReceipt", "RemoteState", "RemoteSubscription", "connect_redis"]

logger = logging.getLogger(__name__)

_LEAVE_WITHIN: Final = 2.0  # seconds a closing handle spends telling the owner
_ACK_SLOTS: Final = 10_000  # receipts whose acks may still come, at most


class _Waiter:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.reply: dict[str, Any] | None = None


@final
class RemoteReceipt(metaclass=NoPublicConstructor):
    """The result of one action applied by the owner; see :class:`~stateward.Receipt`.

    Attributes:
        revision: The revision after the action.
        changed: Whether it changed anything.
        subscribers: The owner's subscribers that were asked.
        action_id: The action's id.
        derive_errors: ``"dest: error"`` per derivation that raised.
    """

    def __init__(
        self, state: RemoteState, action_id: str, reply: dict[str, Any]
    ) -> None:
        self._state = state
        self.action_id = action_id
        self.revision: int = reply["revision"]
        self.changed: bool = reply["changed"]
        self.subscribers: tuple[str, ...] = tuple(reply["subscribers"])
        self.derive_errors: tuple[str, ...] = tuple(reply["derive_errors"])

    def __repr__(self) -> str:
        return (
            f"<RemoteReceipt rev={self.revision} changed={self.changed} "
            f"subscribers={list(self.subscribers)}>"
        )

    async def acks(self, timeout: float | None = None) -> AckReport:
        """Wait for the subscribers' report, or until *timeout* seconds pass.

        The owner relays the report once every subscriber answered or its own
        ``ack_timeout`` passed. If *timeout* passes first, every subscriber is
        reported ``missing`` (``MISSING_RESPONSE``). Always a checkpoint; may
        be called again later.

        Raises:
            RemoteError: The owner's report could not be read (malformed).
        """
        if not self.subscribers:
            await anyio.lowlevel.checkpoint()
            return AckReport(ResultCode.ALL_SUBS_SUCCESS, (), ())
        waiter = self._state._ack_waiter(self.action_id)
        with anyio.move_on_after(timeout):
            await waiter.event.wait()
        reply = waiter.reply
        if reply is None:
            return AckReport(ResultCode.MISSING_RESPONSE, (), self.subscribers)
        if reply["kind"] != "acks":
            raise refusal_error(reply)
        acks = tuple(Ack(n, self.revision, int(r), str(m)) for n, r, m in reply["acks"])
        return AckReport(ResultCode(reply["result"]), acks, tuple(reply["missing"]))


@final
class RemoteState(metaclass=NoPublicConstructor):
    """A state served by another process; made by :func:`connect_redis`.

    Belongs to the event loop that opened it. Any number of tasks may send
    at once; each request waits for its own answer.
    """

    def __init__(
        self, conn: Connection, keys: protocol.Keys, client: str, resend_after: float
    ) -> None:
        self._conn = conn
        self._keys = keys
        self.client = client
        """This client's name (its reply stream is ``sw:{name}:reply:<client>``)."""
        self._resend_after = resend_after
        self._waiters: dict[str, _Waiter] = {}
        self._acks: dict[str, _Waiter] = {}
        self._last = b"0-0"
        self._tg: Any = None
        self._subscriptions: dict[str, RemoteSubscription] = {}  # running here
        self.resends = 0
        """Requests added again because no answer came in time."""

    def __repr__(self) -> str:
        return f"<RemoteState {self._keys.name!r} client={self.client!r}>"

    def _ack_waiter(self, action_id: str) -> _Waiter:
        waiter = self._acks.get(action_id)
        if waiter is None:
            waiter = self._acks[action_id] = _Waiter()
            while len(self._acks) > _ACK_SLOTS:
                self._acks.pop(next(iter(self._acks)))
        return waiter

    async def send(
        self,
        action: Action,
        *,
        durable: bool | None = None,
        timeout: float | None = None,
    ) -> RemoteReceipt:
        """Send *action* to the owner; return once it is applied there.

        Args:
            action: Any action; an ``eq`` callable cannot be sent.
            durable: As :meth:`StateHandle.send` on the owner (None: its default).
            timeout: Seconds to wait at most (None: until answered).

        Raises:
            ActionRejectedError: (and its subclasses) The owner's tree refused it.
            InvalidActionError: It cannot be sent, or the owner refused it.
            RemoteTimeoutError: No answer within *timeout* (it may still apply).
        """
        if not isinstance(cast("object", action), Action) or type(action) is Action:
            reason = f"expected an action such as Set or Delete, got {action!r}"
            raise InvalidActionError("action", reason)
        check_bool("durable", durable, optional=True)
        message = {
            "v": protocol.PROTOCOL_VERSION,
            "op": "send",
            "id": action.id,
            "client": self.client,
            "durable": durable,
            "action": protocol.encode_action(action),
        }
        reply = await self._request(action.id, message, timeout)
        kind = reply["kind"]
        if kind == "applied":
            if reply["subscribers"]:
                self._ack_waiter(action.id)  # so that an early report is kept
            return RemoteReceipt._create(self, action.id, reply)
        raise refusal_error(reply)

    async def get(
        self, path: PathLike = "", default: JSON = None, *, timeout: float | None = None
    ) -> JSON:
        """Return a copy of the value at *path* on the owner, or *default*.

        Ordered with this client's sends: it sees every write this client's
        earlier sends made (read-your-writes).
        """
        segments = parse_path(path)
        default = own_json(default, "default")  # (checked here, as a Set's value)
        request_id = protocol.new_request_id()
        message = {
            "v": protocol.PROTOCOL_VERSION,
            "op": "get",
            "id": request_id,
            "client": self.client,
            "path": list(segments),
            "default": default,
        }
        reply = await self._request(request_id, message, timeout)
        if reply["kind"] != "value":
            raise refusal_error(reply)
        value: JSON = reply["value"]
        return value

    async def subscribe(
        self,
        pattern: PathLike,
        handler: Handler,
        *,
        name: str,
        timeout: float = 5.0,
        refresh: float = 5.0,
        from_revision: int | None = None,
    ) -> RemoteSubscription:
        """Run *handler* here as a subscriber of the owner's state at *pattern*.

        The owner adds a subscriber named *name* that forwards each event here;
        this process runs *handler* on it (sync or async; its RAS code, or
        ``(code, message)``, or an exception's text, as locally) and sends the
        Ack back, so every sender's ``receipt.acks()`` counts it like a local
        subscriber's. No Ack within *timeout* seconds: the delivery is reported
        ``missing``; after 3 in a row the owner drops the subscriber with a
        warning. Every *refresh* seconds the subscription is registered again
        (idempotent), so it comes back within *refresh* of an owner restart.

        Events arrive in revision order. With *from_revision*, every matching
        change after it is replayed first (from the owner's history or
        journal), then live ones: no gap, no duplicate. Runs until
        :meth:`RemoteSubscription.unsubscribe` or the connection closes.

        Raises:
            InvalidActionError: A bad name or pattern, or the owner refused it
                (the name belongs to another subscriber).
            CompactedError: *from_revision* is older than the owner keeps.
        """
        check_seconds("refresh", refresh, positive=True)
        check_int("from_revision", from_revision, 0, optional=True)
        sub = RemoteSubscription._create(self, protocol.check_name(name, "name"))
        sub._pattern = format_path(parse_pattern(pattern))  # (here: once, checked)
        reply = await self._subscribe_request(sub, timeout, from_revision)
        sub._epoch, sub._after = reply["epoch"], reply["seq"]
        # Where its events start: after from_revision, or live.
        sub._revision = reply["revision"] if from_revision is None else from_revision
        assert self._tg is not None
        self._subscriptions[sub.name] = sub
        self._tg.start_soon(sub._run, handler, timeout, refresh)
        return sub

    async def watch(
        self,
        pattern: PathLike = "**",
        *,
        from_revision: int | None = None,
        name: str | None = None,
        timeout: float = 60.0,
    ) -> AsyncGenerator[StateChanged | Resync]:
        """Iterate over the owner's changes at *pattern*, as a loop.

        ``async for event in state.watch("jobs.**", from_revision=r)``: every
        matching change after *r*, in revision order, then live ones; without
        *from_revision*, from the newest revision on the feed. Read from the
        owner's feed stream with plain XREADs: a watcher costs the owner
        nothing and is not a subscriber (it answers no Ack). A change that
        replaced an ancestor of *pattern* is delivered as locally, but
        without the check that the watched part changed.

        No silent gap: revisions the feed lost (trimmed while this loop was
        slow, or lost with Redis) come as one :class:`Resync`. Redis going
        away is waited out.

        Older than the feed keeps: the owner replays from its history or
        journal through a remote subscriber named *name* (default: made up),
        whose handler has *timeout* seconds per event.

        Raises:
            CompactedError: *from_revision* is older than the owner keeps.
        """
        segments = parse_pattern(pattern)
        trie: PatternTrie[int] = PatternTrie()
        trie.add(segments, 0)
        bounds = await self._conn.bounds(self._keys.feed)
        if from_revision is not None:
            check_int("from_revision", from_revision, 0)
            if bounds is not None and from_revision < bounds[0] - 1:
                # Not on the feed (any more): the owner replays it.
                async with contextlib.aclosing(
                    self._watch_by_subscriber(pattern, from_revision, name, timeout)
                ) as events:
                    async for event in events:
                        yield event
                return
            after = from_revision
        else:
            after = 0 if bounds is None else bounds[1]
        # The blocking reads run in a task of this handle, on a connection of
        # their own; this loop only receives (so leaving it early is safe).
        send, receive = anyio.create_memory_object_stream[StateChanged | Resync](0)

        async def read(*, task_status: Any) -> None:
            with anyio.CancelScope() as scope, send:
                task_status.started(scope)
                with contextlib.suppress(anyio.BrokenResourceError):  # loop left
                    pattern = format_path(segments)
                    feed = self._keys.feed
                    await pump_feed(self._conn, feed, send, trie, pattern, after)

        scope = await self._tg.start(read)
        try:
            with receive:
                async for event in receive:
                    yield event
        finally:
            scope.cancel()

    async def _watch_by_subscriber(
        self,
        pattern: PathLike,
        from_revision: int | None,
        name: str | None,
        timeout: float,
    ) -> AsyncGenerator[StateChanged | Resync]:
        """A remote subscriber that hands each event to a loop."""
        send, receive = anyio.create_memory_object_stream[StateChanged | Resync](0)

        async def forward(event: StateChanged | Resync) -> int:
            await send.send(event)
            return 1

        name = name or f"watch-{os.urandom(4).hex()}"
        sub = await self.subscribe(
            pattern, forward, name=name, timeout=timeout, from_revision=from_revision
        )
        try:
            with receive:
                async for event in receive:
                    yield event
        finally:
            send.close()
            with anyio.CancelScope(shield=True), contextlib.suppress(StatewardError):
                await sub.unsubscribe()

    async def _leave(self) -> None:
        """This handle closes: its subscribers leave the owner (best effort).

        Each removal is added to the owner's stream without waiting for the
        answer: the owner applies it when it reads it. Left to the owner's
        misses instead, a subscriber gone with its client would hold up
        every write to the owner's state while its mailbox was full.
        """
        for sub in list(self._subscriptions.values()):
            _, message = sub._stop()
            with contextlib.suppress(StatewardError):
                await self._conn.xadd(self._keys.actions, protocol.encode(message))

    async def _subscribe_request(
        self,
        sub: RemoteSubscription,
        timeout: float,
        from_revision: int | None = None,
    ) -> dict[str, Any]:
        """Register *sub* (at its canonical pattern) with the owner."""
        check_seconds("timeout", timeout, positive=True)
        request_id = protocol.new_request_id()
        message = {
            "v": protocol.PROTOCOL_VERSION,
            "op": "subscribe",
            "id": request_id,
            "client": self.client,
            "subscriber": sub.name,
            "pattern": sub._pattern,
            "timeout": timeout,
            "from_revision": from_revision,
        }
        reply = await self._request(request_id, message, None)
        if reply["kind"] != "subscribed":
            raise refusal_error(reply)
        return reply

    async def _request(
        self, request_id: str, message: dict[str, Any], timeout: float | None
    ) -> dict[str, Any]:
        if timeout is not None:
            check_seconds("timeout", timeout)
        fields = protocol.encode(message)
        waiter = self._waiters[request_id] = _Waiter()
        try:
            with anyio.fail_after(timeout):
                backoff = Backoff()
                while True:
                    try:
                        await self._conn.xadd(self._keys.actions, fields)
                    except RemoteUnavailableError:
                        await backoff.wait()
                        continue
                    with anyio.move_on_after(self._resend_after):
                        await waiter.event.wait()
                    if waiter.reply is not None:
                        return waiter.reply
                    self.resends += 1
        except TimeoutError:
            msg = f"no answer from the owner of {self._keys.name!r} within {timeout}s"
            raise RemoteTimeoutError(msg) from None
        finally:
            self._waiters.pop(request_id, None)

    async def _read_replies(
        self, *, task_status: Any = anyio.TASK_STATUS_IGNORED
    ) -> None:
        key = self._keys.reply(self.client)
        task_status.started()
        backoff = Backoff()
        async with open_connection(self._url, name=f"sw-{self.client}") as conn:
            while True:
                try:
                    entries = await conn.xread(
                        key, self._last, count=256, block_ms=BLOCK_MS
                    )
                except RemoteUnavailableError:
                    await backoff.wait()
                    continue
                backoff.reset()
                for entry_id, fields in entries:
                    self._last = entry_id
                    try:
                        reply = decode_reply(fields)
                    except StatewardError as exc:
                        # Whoever waits for it hears why, rather than waiting on.
                        logger.warning("a malformed reply: %s", exc)
                        request_id = id_of(fields)
                        if request_id is not None:
                            reply = {"id": request_id, "kind": "malformed"}
                            reply["why"] = str(exc)
                            _answer(self._acks, reply)
                            _answer(self._waiters, reply)
                        continue
                    _answer(
                        self._acks if reply["kind"] == "acks" else self._waiters, reply
                    )

    _url: str


def _answer(waiters: dict[str, _Waiter], reply: dict[str, Any]) -> None:
    """Hand *reply* to whoever waits for its id among *waiters* (once)."""
    waiter = waiters.get(reply["id"])
    if waiter is not None and waiter.reply is None:
        waiter.reply = reply
        waiter.event.set()


@contextlib.asynccontextmanager
async def connect_redis(
    url: str,
    *,
    name: str,
    client: str | None = None,
    resend_after: float = 1.0,
) -> AsyncIterator[RemoteState]:
    """Connect to the state that an owner serves under *name*.

    Args:
        url: ``redis://[user:password@]host:port/db``, or ``rediss://`` for TLS.
        name: The state's name, as given to :func:`serve_redis`.
        client: This client's name (default: host, pid and a random part).
            Two live clients must not share one.
        resend_after: Seconds without an answer before a request is added
            again (same id: applied at most once).

    Raises:
        RemoteUnavailableError: Redis cannot be reached at start.
    """
    keys = protocol.Keys(name)
    client_name = protocol.check_name(client or unique_name(), "client")
    check_seconds("resend_after", resend_after, positive=True)
    async with open_connection(url, name=f"sw-{client_name}") as conn:
        await conn.run_id()  # fail now, not on the first send, when Redis is down
        state = RemoteState._create(conn, keys, client_name, resend_after)
        state._url = url
        async with background() as tg:
            state._tg = tg
            await tg.start(state._read_replies)
            try:
                yield state
            finally:
                with anyio.move_on_after(_LEAVE_WITHIN, shield=True):
                    await state._leave()
        if client is None:
            with contextlib.suppress(RemoteError):
                await conn.delete([keys.reply(client_name)])
