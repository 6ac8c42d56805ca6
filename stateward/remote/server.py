"""The owner: serve a running state to other processes over Redis Streams.

``async with serve_redis(state, url, name="jobs") as server:`` reads the
requests of every client from ``sw:{jobs}:actions`` (a consumer group), in
stream order, applies each through the local handle, and answers on the
client's own reply stream. The state's journal stays the one source of
truth: Redis may lose everything at any moment, and nothing acknowledged is
lost with it.

Exactly once over at-least-once delivery:

* Every action carries its id; a client that gets no answer sends the same
  entry again, and the owner reads its own pending entries first after any
  restart or reconnection.
* The owner answers an id it has seen from its **dedupe window** (the last
  ``window`` ids and their replies) instead of applying it again. For a
  persisted state the window survives a restart: ids of actions that changed
  the state are read back from the journal, and ids of actions that changed
  nothing or were rejected are kept in ``remote-<name>.dedupe`` beside it,
  fsynced before the reply. So a late duplicate of an equal ``Set`` can never
  undo a later write.
* The reply goes out only after the action is applied (and, when the send is
  durable, on disk); the entry is acknowledged (XACK) only after the reply.

Redis losing its data (a restart without persistence, a flush) shows as a
missing consumer group: the owner recreates it and goes on; clients re-send
what was not answered.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, final

import anyio
import attrs

from .._errors import (
    ActionRejectedError,
    InvalidActionError,
    RemoteError,
    RemoteUnavailableError,
    StateBrokenError,
    StateClosedError,
    StatewardError,
)
from ..actors._files import crash_point
from . import protocol
from ._dead_letters import dead_letter
from ._dedupe import DedupeWindow, append_synced
from ._lease import still_held
from ._proxy import Proxies
from ._redis import BLOCK_MS, Backoff, NoGroupError, open_connection
from ._replies import (
    REPLY_MAXLEN,
    acks_reply,
    invalid,
    rejected,
    value_reply,
)

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ..actors.handle import StateHandle
    from ..actors.state import Receipt
    from ..messages.actions import Action
    from ..signals.bridge import SignalsBridge
    from ._lease import OwnerLease
    from ._redis import Connection, Entry
    from ._writable import Writable
    from .feed import FeedPublisher

__all__ = ["RedisServer"]

logger = logging.getLogger(__name__)


@final
class RedisServer:
    """The running owner made by :func:`serve_redis` (statistics, the keys).

    Its counters are read without blocking; all of its work runs in the task
    group that ``serve_redis`` opened.
    """

    def __init__(
        self,
        state: StateHandle,
        url: str,
        keys: protocol.Keys,
        writable: Writable,
        window: int,
        ack_timeout: float,
        batch: int,
    ) -> None:
        self._state = state
        self._url = url
        self.keys = keys
        """The Redis keys this state is served under."""
        self._writable = writable
        self._window = DedupeWindow(window)
        self._ack_timeout = ack_timeout
        self._batch = batch
        self._writer: Connection | None = None
        self.applied = 0
        """Actions applied for remote clients."""
        self.duplicates = 0
        """Requests answered from the dedupe window (not applied again)."""
        self.refused = 0
        """Entries refused (malformed, oversized, not allowed): see the dead stream."""
        self.reconnects = 0
        """Times the owner reconnected after Redis went away."""
        self.redis_losses = 0
        """Times Redis had lost the consumer group (its data) and it was recreated."""
        self._proxies = Proxies(self)
        self._tg: TaskGroup | None = None
        self.busy_seconds = 0.0
        """Time spent handling what was read (apply, journal wait, replies):
        with :attr:`applied`, the owner's share of a remote send's time."""
        self._unacked: list[bytes] = []  # replied, XACK not sent yet
        self.reply_seconds = 0.0
        """The part of :attr:`busy_seconds` spent sending replies and XACKs."""
        self.feed: FeedPublisher | None = None
        """The feed publisher (None with ``feed_size=0``)."""
        self.signals: SignalsBridge | None = None
        """The state-signals bridge, when ``serve_redis(signals=...)`` runs one."""
        self._lease: OwnerLease | None = None  # set by serve_redis
        self.stopped: StatewardError | None = None
        """Why serving ended before the block did: the state stopped or failed."""

    async def _still_ours(self) -> bool:
        """After a reconnection, before reading: is the name still ours?

        Without this look, an owner cut off for longer than its lease could
        read (and apply) requests meant for the owner that took over, until
        its next renewal noticed.
        """
        return self._lease is None or await still_held(self._lease, self._lost_name)

    async def _lost_name(self, holder: str) -> None:
        """Another owner holds the name now: stop serving it, at once."""
        why = f"another owner serves {self.keys.name!r}: {holder}"
        self.stopped = RemoteError(why)
        logger.error("%s; no longer served here", self.stopped)
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._proxies.close()  # (shielded: its stand-ins leave now)

    @property
    def forged_acks(self) -> int:
        """Acks refused: malformed, from another client, or for no event asked."""
        return self._proxies.forged_acks

    def __repr__(self) -> str:
        return (
            f"<RedisServer {self.keys.name!r} applied={self.applied} "
            f"duplicates={self.duplicates} refused={self.refused}>"
        )

    # -- the loop ------------------------------------------------------------

    async def _run(self, tg: TaskGroup, *, task_status: Any) -> None:
        """The owner's loop, in *tg* (``self._tg``, the server's own group)."""
        state = self._state
        rebuilt = await anyio.to_thread.run_sync(
            self._window.load, state.state_dir, self.keys.name, state.revision
        )
        state._let_go(rebuilt)  # (a large tree freed at once stops the loop)
        del rebuilt
        backoff = Backoff()
        started = False
        while True:
            try:
                async with (
                    open_connection(self._url, name="sw-owner") as reader,
                    open_connection(self._url, name="sw-owner-w") as writer,
                ):
                    self._writer = writer
                    if started and not await self._still_ours():
                        return  # (away longer than the lease: another serves)
                    await reader.ensure_group(self.keys.actions, self.keys.GROUP)
                    if not started:
                        started = True
                        tg.start_soon(self._proxies.read_acks)
                        tg.start_soon(self._proxies.expire_idle)
                        task_status.started()
                    backoff.reset()
                    await self._serve(reader, writer, tg)
            except (StateClosedError, StateBrokenError) as exc:
                # The state stopped under the server (or failed): serving ends
                # here, quietly. What was read and not answered stays pending
                # in the group for the next owner, which answers what this
                # one applied from its journal, as a duplicate.
                self.stopped = exc
                logger.warning(
                    "the state served as %r stopped (%s): no longer served",
                    self.keys.name,
                    exc,
                )
                return
            except NoGroupError:
                self.redis_losses += 1
                logger.warning(
                    "Redis lost the consumer group of %r: recreating it", self.keys.name
                )
            except RemoteUnavailableError as exc:
                if not started:
                    raise
                self.reconnects += 1
                logger.warning(
                    "Redis went away (%s); reconnecting in %.2fs", exc, backoff.delay
                )
                await backoff.wait()

    async def _serve(
        self, reader: Connection, writer: Connection, tg: TaskGroup
    ) -> None:
        keys = self.keys
        start = "0"  # our own pending entries first, then new ones
        self._unacked = []  # a new connection re-reads what was not acknowledged
        while True:
            pending = start != ">"
            if not pending and self._unacked:
                unacked, self._unacked = self._unacked, []
                await writer.xack(keys.actions, keys.GROUP, unacked)
            entries = await reader.xreadgroup(
                keys.actions,
                keys.GROUP,
                "owner",
                start,
                count=self._batch,
                block_ms=None if pending else BLOCK_MS,
            )
            if pending:
                if not entries:
                    start = ">"  # every pending entry is handled: now new ones
                    continue
                start = entries[-1][0].decode()
            elif not entries:
                # Idle: look at our pending entries again. Redis may have
                # handed new ones to a connection of ours that is gone (a
                # blocked read of an owner that was stopped or reconnected):
                # they wait there, under our consumer name, until re-read.
                start = "0"
                continue
            started = time.perf_counter()
            await self._handle_batch(entries, writer, tg)
            self.busy_seconds += time.perf_counter() - started

    async def _handle_batch(
        self, entries: list[Entry], writer: Connection, tg: TaskGroup
    ) -> None:
        """Apply a read's fresh sends in order, and answer them together.

        Consecutive sends share one wait for the journal (one fsync) and one
        append to the dedupe log; they are answered after both. Anything else
        (a duplicate, a get, a subscription, a refusal) first answers the
        sends before it, so every reply still goes out after its commit.
        """
        fresh: list[tuple[bytes, protocol.Request]] = []
        fresh_ids: set[str] = set()
        for entry in entries:
            try:
                request = protocol.decode_request(entry[1])
                if request.op == "send":
                    assert request.action is not None
                    self._writable.check(request.client, request.action)
            except StatewardError as exc:
                await self._apply_and_answer(fresh, writer, tg)
                fresh_ids.clear()
                await dead_letter(writer, self.keys, entry, exc)
                self.refused += 1
                continue
            if (
                request.op == "send"
                and request.id not in self._window
                and request.id not in fresh_ids
            ):
                fresh.append((entry[0], request))
                fresh_ids.add(request.id)
                continue
            fresh_ids.clear()  # answered (and remembered) just below
            await self._apply_and_answer(fresh, writer, tg)
            await self._handle(entry[0], request, writer)
        await self._apply_and_answer(fresh, writer, tg)

    async def _apply_and_answer(
        self,
        fresh: list[tuple[bytes, protocol.Request]],
        writer: Connection,
        tg: TaskGroup,
    ) -> None:
        """Apply *fresh* sends in order (one wake-up of the actor), then answer."""
        if not fresh:
            return
        batch = fresh[:]
        fresh.clear()
        state = self._state
        persisted = state.state_dir is not None
        applied: list[_Applied] = []
        sendable: list[tuple[Action, bool | None]] = []
        waits: list[int] = []
        refused: dict[int, dict[str, Any]] = {}
        for i, (_, request) in enumerate(batch):
            assert request.action is not None
            try:
                # What this send asks of the journal; the wait itself is shared.
                waits.append(state._wait_for(request.durable))
            except InvalidActionError as exc:
                refused[i] = invalid(exc)
                waits.append(0)
                continue
            sendable.append((request.action, False if persisted else None))
        results = iter(await state._send_in_order(sendable))
        for i, (entry_id, request) in enumerate(batch):
            receipt: Receipt | None = None
            if i in refused:
                reply = refused[i]
            else:
                result = next(results)
                if isinstance(result, ActionRejectedError):
                    reply = rejected(result)
                elif isinstance(result, InvalidActionError):
                    reply = invalid(result)
                else:
                    receipt = result
                    self.applied += 1
                    reply = {
                        "kind": "applied",
                        "revision": receipt.revision,
                        "changed": receipt.changed,
                        "subscribers": list(receipt.subscribers),
                        "derive_errors": list(receipt.derive_errors),
                    }
            # In the window at once: a duplicate read later is answered from
            # it (after this one is answered: see _handle_batch).
            self._window.remember(request.id, reply)
            applied.append(_Applied(entry_id, request, reply, receipt, waits[i]))
        await self._answer(applied, writer, tg)

    async def _answer(
        self, applied: list[_Applied], writer: Connection, tg: TaskGroup
    ) -> None:
        """Make *applied* durable (one fsync), reply to each, then XACK them all."""
        if not applied:
            return
        batch = applied
        if any(a.wait for a in batch):
            # Group commit: one wait covers every record up to the last one.
            await self._state.wait_durable(self._state.revision)
        log = self._window.log_path
        lines = self._window.log_lines((a.request.id, a.reply) for a in batch)
        if log is not None and lines:
            # No journal record holds these: on disk before we answer.
            await anyio.to_thread.run_sync(append_synced, log, lines)
        crash_point("remote-applied")  # applied and journaled, not answered
        # Every reply in one round trip, with the XACK of the batch before:
        # an entry is acknowledged only after its reply went out, and a busy
        # owner pays one round trip per batch for both. (Before a blocking
        # read, _serve sends what is left.)
        started = time.perf_counter()
        previous, self._unacked = self._unacked, [a.entry_id for a in batch]
        await writer.xadd_many(
            [
                (
                    self.keys.reply(a.request.client),
                    protocol.encode({"id": a.request.id, **a.reply}),
                )
                for a in batch
            ],
            maxlen=REPLY_MAXLEN,
            then_ack=(self.keys.actions, self.keys.GROUP, previous),
        )
        crash_point("remote-replied")  # answered, not acknowledged (XACK)
        self.reply_seconds += time.perf_counter() - started
        for a in batch:
            if a.receipt is not None and a.receipt.subscribers:
                reply_key = self.keys.reply(a.request.client)
                tg.start_soon(self._relay_acks, a.receipt, a.request.id, reply_key)

    async def _handle(
        self, entry_id: bytes, request: protocol.Request, writer: Connection
    ) -> None:
        """Answer a request that applies nothing: a duplicate, a get, a subscription."""
        reply_key = self.keys.reply(request.client)
        if request.op in ("subscribe", "unsubscribe"):
            answer = await self._proxies.request(request)
            await writer.xadd(
                reply_key,
                protocol.encode({"id": request.id, **answer}),
                maxlen=REPLY_MAXLEN,
            )
            await writer.xack(self.keys.actions, self.keys.GROUP, [entry_id])
            return
        if request.op == "get":
            value = await self._state.get(request.path, request.default)
            reply = value_reply(request.id, request.path, value)
            # The reader's copy, freed in slices (a large one at once would
            # stop the loop), not kept while the reply goes.
            self._state._let_go(value)
            del value
            await writer.xadd(reply_key, reply, maxlen=REPLY_MAXLEN)
            await writer.xack(self.keys.actions, self.keys.GROUP, [entry_id])
            return
        cached = self._window[request.id]  # a send seen before: a duplicate
        self.duplicates += 1
        await writer.xadd(
            reply_key,
            protocol.encode({"id": request.id, **cached}),
            maxlen=REPLY_MAXLEN,
        )
        await writer.xack(self.keys.actions, self.keys.GROUP, [entry_id])

    async def _relay_acks(
        self, receipt: Receipt, action_id: str, reply_key: str
    ) -> None:
        report = await receipt.acks(timeout=self._ack_timeout)
        reply = acks_reply(action_id, report)
        writer = self._writer
        if writer is None:
            return
        with contextlib.suppress(RemoteUnavailableError):
            await writer.xadd(reply_key, reply, maxlen=REPLY_MAXLEN)


@attrs.frozen
class _Applied:
    """A send applied and not answered yet."""

    entry_id: bytes
    request: protocol.Request
    reply: dict[str, Any]
    receipt: Receipt | None
    wait: int  # what it asked of the journal: 0 nothing, 1 written, 2 fsynced
