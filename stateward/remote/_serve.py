"""``serve_redis``: what runs while a state is served, and how it ends.

The owner's lease on the name (:mod:`._lease`), taken first and given back
last; then, in a task group of their own, the owner's loop
(:class:`~.server.RedisServer`), the feed publisher and the state-signals
bridge. Stopping that group (the name taken over by another owner) never
interrupts the caller's block; the block's end stops it, and the remote
subscribers' stand-ins leave the state with it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from .._checks import check_int, check_seconds
from .._errors import InvalidActionError
from . import protocol
from ._lease import LEASE, holding, keep
from ._tasks import background, task_group
from ._writable import Writable
from .feed import FeedPublisher
from .server import RedisServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from ..actors.handle import StateHandle
    from ..paths import PathLike
    from ..signals.bridge import Signals

__all__ = ["serve_redis"]


@contextlib.asynccontextmanager
async def serve_redis(
    state: StateHandle,
    url: str,
    *,
    name: str,
    writable: Mapping[str, Sequence[PathLike]] | None = None,
    window: int = 100_000,
    ack_timeout: float = 30.0,
    batch: int = 256,
    feed_size: int = 10_000,
    signals: Signals | None = None,
    lease: float = LEASE,
) -> AsyncIterator[RedisServer]:
    """Serve *state* to other processes under *name* until the block exits.

    Args:
        state: The running state to serve (this process owns it).
        url: ``redis://[user:password@]host:port/db``, or ``rediss://`` for TLS.
        name: The state's name on Redis (``sw:{name}:...``): 1-64 of
            ``A-Z a-z 0-9 . _ -``.
        writable: Per client name, the path prefixes it may write at; a
            client not named may write nothing. None: every client writes
            anywhere.
        window: How many action ids the dedupe window remembers. A client
            that re-sends an id older than the last *window* actions may see
            it applied again: keep it well above what all clients send during
            their longest re-send horizon.
        ack_timeout: How long the owner waits for the subscribers' acks of a
            remote action before it relays the report with ``missing``.
        batch: Most entries read per round trip.
        feed_size: How many of the newest revisions the feed stream
            (``sw:{name}:feed``, read by remote ``watch``) keeps; 0: no feed.
        signals: Run the state-signals bridge too (``server.signals``):
            unchanged state-signals exporters and responders meet this
            state; see :class:`~stateward.signals.Signals`.
        lease: Seconds the owner's claim on *name* lasts unless renewed
            (every third of it). One process serves a name at a time: a
            second owner waits up to *lease* for the first one's claim to
            run out (one killed), then refuses to start; an owner that finds
            its claim taken (away longer than *lease*) stops serving.

    Returns once the owner holds the name, is connected and reading.
    Requests are applied in stream order; the sends of one read share one
    wait for the journal and are answered after it.

    Raises:
        RemoteUnavailableError: Redis cannot be reached at start. (Later
            losses are survived: the owner reconnects on its own.)
        RemoteError: Another process serves *name*.
        InvalidActionError: A bad option.
    """
    keys = protocol.Keys(name)
    check_seconds("lease", lease, positive=True)
    check_int("window", window, 1)
    check_seconds("ack_timeout", ack_timeout, positive=True)
    check_int("batch", batch, 1, maximum=10_000)
    check_int("feed_size", feed_size, 0)
    allowed = Writable(writable)
    if signals is not None and not callable(getattr(signals, "bridge", None)):
        reason = f"must be a stateward.signals.Signals (got {signals!r})"
        raise InvalidActionError("signals", reason)
    server = RedisServer(state, url, keys, allowed, window, ack_timeout, batch)
    try:
        async with holding(url, keys.owner, lease) as claim, background() as outer:
            # The server's tasks in a group of their own: stopping them (its
            # name served by another owner now) leaves the caller's block be.
            tg = server._tg = await outer.start(task_group)
            server._lease = claim
            tg.start_soon(keep, claim, server._lost_name)
            if feed_size:
                server.feed = FeedPublisher(state, url, keys, feed_size)
                await tg.start(server.feed.run)
            await tg.start(lambda task_status: server._run(tg, task_status=task_status))
            if signals is not None:
                # The bridge is a layer above this one: made by its own config.
                bridge = server.signals = signals.bridge(state, url, name)
                await tg.start(
                    lambda task_status: bridge.run(tg, task_status=task_status)
                )
            yield server
    finally:
        # Its remote subscribers' stand-ins leave the state with it.
        await server._proxies.close()
