"""The transport seam: the only module that imports coredis.

Everything above it speaks in bytes, stream entries and stateward's own
errors, so another client could replace coredis here alone. coredis runs on
anyio, so the same code serves trio and asyncio.

Its automatic retries are off: a command that failed half-way is not re-sent
behind our back (a re-sent XADD would be a duplicate). Re-sending is the
protocol's job, by action id.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Final, TypeAlias, final

import anyio
import anyio.lowlevel
import coredis
import coredis.exceptions
from coredis.retry import NoRetryPolicy

from .._errors import RemoteError, RemoteUnavailableError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence

__all__ = [
    "BLOCK_MS",
    "Backoff",
    "Connection",
    "Entry",
    "Messages",
    "NoGroupError",
    "open_connection",
]

Entry = tuple[bytes, dict[bytes, bytes]]
"""A stream entry: (id, fields)."""

BLOCK_MS: Final = 1000
"""How long one read of a stream blocks at Redis (milliseconds)."""
_BACKOFF_FIRST: Final = 0.05
_BACKOFF_MOST: Final = 1.0


class Backoff:
    """The wait between tries while Redis is away: 50 ms, doubling up to 1 s.

    :meth:`reset` once a try succeeded. Concurrency: one task's.
    """

    __slots__ = ("delay",)

    def __init__(self) -> None:
        self.delay = _BACKOFF_FIRST
        """The next wait, in seconds."""

    def reset(self) -> None:
        """Back to the shortest wait (Redis answered)."""
        self.delay = _BACKOFF_FIRST

    async def wait(self) -> None:
        """Wait, then double the next wait (up to 1 s)."""
        await anyio.sleep(self.delay)
        self.delay = min(self.delay * 2, _BACKOFF_MOST)


_CONNECT_TIMEOUT: Final = 5.0


class NoGroupError(RemoteError):
    """The consumer group (or its stream) is gone: Redis lost its data."""


@contextlib.contextmanager
def _mapped(passed: Sequence[BaseException] = ()) -> Iterator[None]:
    """Translate coredis' errors into stateward's at the boundary.

    Exceptions in *passed* (the caller's own) leave untranslated.
    """
    try:
        yield
    except RemoteError:
        raise  # already ours (RemoteUnavailableError is an OSError too)
    except Exception as exc:
        if any(exc is p for p in passed):
            raise
        ours = _translated(exc)
        if ours is None:
            raise
        raise ours from exc


def _translated(exc: Exception) -> RemoteError | None:
    """Stateward's error for coredis' (or an OS) error *exc*, or None."""
    errors = coredis.exceptions
    if isinstance(exc, errors.ConnectionError):  # ProtocolError, BusyLoading
        return RemoteUnavailableError(f"Redis cannot be reached: {exc}")
    if isinstance(exc, (TimeoutError, OSError)):
        return RemoteUnavailableError(f"Redis cannot be reached: {exc!r}")
    if isinstance(exc, errors.AuthenticationError):
        return RemoteError(f"Redis refused the credentials: {exc}")
    if isinstance(exc, errors.AuthorizationError):
        return RemoteError(f"Redis refused the command (ACL): {exc}")
    if isinstance(exc, errors.RedisError):
        group_error = getattr(errors, "StreamConsumerGroupError", ())
        if isinstance(exc, group_error) or str(exc).startswith("NOGROUP"):
            return NoGroupError(str(exc))
        return RemoteError(f"Redis answered an error: {exc!r}")
    return None


@final
class Connection:
    """One Redis client (its own connections); every method is a checkpoint.

    Not shared between a task that blocks on a read and tasks that write: open
    one per role, so a blocking read never delays a write.
    """

    def __init__(self, client: Any) -> None:
        self._client = client

    async def xadd(
        self, key: str, fields: dict[bytes, bytes], *, maxlen: int | None = None
    ) -> bytes:
        """Append an entry; with *maxlen*, trim the stream to about that many."""
        with _mapped():
            if maxlen is None:
                entry_id = await self._client.xadd(key, fields)
            else:
                entry_id = await self._client.xadd(
                    key,
                    fields,
                    trim_strategy=coredis.PureToken.MAXLEN,
                    threshold=maxlen,
                    trim_operator=coredis.PureToken.APPROXIMATELY,
                )
        return bytes(entry_id)

    async def xadd_many(
        self,
        entries: Sequence[tuple[str, dict[bytes, bytes]]],
        *,
        maxlen: int,
        then_ack: tuple[str, str, Sequence[bytes]] | None = None,
    ) -> None:
        """Append each ``(key, fields)`` in order, in one round trip.

        A pipeline, not a transaction; each stream is trimmed to about
        *maxlen* entries. *then_ack* ``(key, group, ids)``: an XACK sent last
        in the same round trip.
        """
        with _mapped():
            async with self._client.pipeline(transaction=False) as pipe:
                for key, fields in entries:
                    pipe.xadd(
                        key,
                        fields,
                        trim_strategy=coredis.PureToken.MAXLEN,
                        threshold=maxlen,
                        trim_operator=coredis.PureToken.APPROXIMATELY,
                    )
                if then_ack is not None and then_ack[2]:
                    pipe.xack(then_ack[0], then_ack[1], list(then_ack[2]))

    async def xadd_at(
        self,
        key: str,
        entries: Sequence[tuple[int, dict[bytes, bytes]]],
        *,
        min_id: int,
    ) -> int:
        """Append each ``(n, fields)`` with the id ``<n>-0``, in one round trip.

        The stream is trimmed (approximately) to ids >= ``<min_id>-0``.
        Returns the number of the stream's last id *before* the append (0:
        empty), read in the same round trip, so that the caller can tell that
        the stream was lost (Redis restarted) since it last wrote.

        Raises:
            RemoteError: An id is not above the stream's last one.
        """
        with _mapped():
            async with self._client.pipeline(transaction=False) as pipe:
                before = pipe.xrevrange(key, count=1)
                for n, fields in entries:
                    pipe.xadd(
                        key,
                        fields,
                        identifier=f"{n}-0",
                        trim_strategy=coredis.PureToken.MINID,
                        threshold=f"{max(min_id, 0)}-0",
                        trim_operator=coredis.PureToken.APPROXIMATELY,
                    )
            last = await before
        return _number(last[0].identifier) if last else 0

    async def bounds(self, key: str) -> tuple[int, int] | None:
        """The first and last ``<n>-0`` ids of such a stream; None if it is empty."""
        with _mapped():
            first = await self._client.xrange(key, count=1)
            last = await self._client.xrevrange(key, count=1)
        if not first or not last:
            return None
        return _number(first[0].identifier), _number(last[0].identifier)

    async def ensure_group(self, key: str, group: str) -> None:
        """Create *group* on *key* from its first entry (and the stream), if missing."""
        with _mapped():
            try:
                await self._client.xgroup_create(
                    key, group, identifier="0", mkstream=True
                )
            except coredis.exceptions.RedisError as exc:
                duplicate = getattr(
                    coredis.exceptions, "StreamDuplicateConsumerGroupError", ()
                )
                if not (isinstance(exc, duplicate) or "BUSYGROUP" in str(exc)):
                    raise

    async def xreadgroup(
        self,
        key: str,
        group: str,
        consumer: str,
        start: str,
        *,
        count: int,
        block_ms: int | None,
    ) -> list[Entry]:
        """Read as *consumer*: ``start="0"`` its pending entries, ``">"`` new ones."""
        with _mapped():
            found = await self._client.xreadgroup(
                group, consumer, {key: start}, count=count, block=block_ms
            )
        return _entries(found, key)

    async def xread(
        self, key: str, after: bytes, *, count: int, block_ms: int | None
    ) -> list[Entry]:
        """Read the entries of *key* after the id *after*."""
        with _mapped():
            found = await self._client.xread({key: after}, count=count, block=block_ms)
        return _entries(found, key)

    async def xack(self, key: str, group: str, ids: list[bytes]) -> None:
        """Acknowledge *ids*: they leave the group's pending list."""
        if ids:
            with _mapped():
                await self._client.xack(key, group, ids)

    async def delete(self, keys: list[str]) -> None:
        """Remove *keys*."""
        with _mapped():
            await self._client.delete(keys)

    async def publish(self, channel: str, data: bytes) -> int:
        """PUBLISH *data* on *channel*; returns how many subscribers got it."""
        with _mapped():
            return int(await self._client.publish(channel, data))

    @contextlib.asynccontextmanager
    async def listen(self, channels: Sequence[str]) -> AsyncIterator[Messages]:
        """SUBSCRIBE to *channels* (subscribed on entry) and iterate their messages.

        Pub/sub is at most once: what is published while the connection is
        away is lost. A lost connection is a :class:`RemoteUnavailableError`
        from the iteration.
        """
        with _mapped():
            async with self._client.pubsub(
                channels=list(channels),
                ignore_subscribe_messages=True,
                retry_policy=NoRetryPolicy(),
            ) as pubsub:
                yield _Messages(pubsub)

    async def claim(self, key: str, value: str, ms: int) -> bool:
        """SET *key* to *value* for *ms* milliseconds if it is not set."""
        with _mapped():
            done = await self._client.set(
                key, value, condition=coredis.PureToken.NX, px=ms
            )
        return bool(done)

    async def get_text(self, key: str) -> str | None:
        """The value of the string *key* (None: not set)."""
        with _mapped():
            found = await self._client.get(key)
        if found is None:
            return None
        return found.decode() if isinstance(found, bytes) else str(found)

    async def expire_in(self, key: str, ms: int) -> bool:
        """Make *key* expire *ms* milliseconds from now (False: it is not set)."""
        with _mapped():
            return bool(await self._client.pexpire(key, ms))

    async def run_id(self) -> str:
        """The server's run id: it changes when Redis restarts."""
        with _mapped():
            info = await self._client.info("server")
        return str(info.get("run_id", ""))


Messages: TypeAlias = "AsyncIterator[tuple[str, bytes]]"
"""Pub/sub messages: (channel, data)."""


class _Messages:
    """The messages of a pub/sub connection (a plain iterator: no aclosing)."""

    __slots__ = ("_pubsub",)

    def __init__(self, pubsub: Any) -> None:
        self._pubsub = pubsub

    def __aiter__(self) -> _Messages:
        return self

    async def __anext__(self) -> tuple[str, bytes]:
        while True:
            with _mapped():
                message = await self._pubsub.__anext__()
            if message.get("type") != "message":
                continue
            channel, data = message["channel"], message["data"]
            if isinstance(channel, bytes):
                channel = channel.decode("utf-8", "replace")
            if isinstance(data, str):
                data = data.encode()
            return str(channel), bytes(data)


def _number(identifier: Any) -> int:
    text = identifier.decode() if isinstance(identifier, bytes) else str(identifier)
    return int(text.split("-", 1)[0])


def _entries(found: Any, key: str) -> list[Entry]:
    if not found:
        return []
    raw = found.get(key.encode()) or found.get(key) or ()
    return [(bytes(e.identifier), dict(e.field_values)) for e in raw]


@contextlib.asynccontextmanager
async def open_connection(
    url: str, *, name: str | None = None
) -> AsyncIterator[Connection]:
    """Open a client for *url* (``redis://``, ``rediss://`` for TLS, with credentials).

    Raises:
        RemoteUnavailableError: Redis cannot be reached.
        RemoteError: The URL or the credentials are refused.
    """
    try:
        client = coredis.Redis.from_url(
            url,
            retry_policy=NoRetryPolicy(),
            decode_responses=False,
            connect_timeout=_CONNECT_TIMEOUT,
            client_name=name,
        )
    except ValueError as exc:
        # The URL may hold a password: never put it in a message.
        msg = f"not a Redis URL ({type(exc).__name__})"
        raise RemoteError(msg) from None
    # What the caller's block raises is its own (a TimeoutError of its
    # fail_after is not "Redis cannot be reached"): only coredis' errors
    # are translated.
    raised: list[BaseException] = []
    try:
        with _mapped(raised):
            async with client:
                try:
                    yield Connection(client)
                except BaseException as exc:
                    raised.append(exc)
                    raise
    except BaseExceptionGroup as group:
        # coredis runs its pool in a task group of its own, which wraps
        # whatever leaves the block: give the caller its own exception.
        # coredis' pub/sub, cancelled, unsubscribes on a connection its pool
        # has closed already: the cancellation is what happened.
        closed, rest = group.split(anyio.ClosedResourceError)
        if rest is None:
            await anyio.lowlevel.checkpoint_if_cancelled()
            msg = "Redis cannot be reached: the connection was closed"
            raise RemoteUnavailableError(msg) from None
        if closed is not None:
            group = rest
        leaf = _single(group)
        if leaf is None:
            raise
        if isinstance(leaf, Exception) and not any(leaf is p for p in raised):
            # From coredis' own tasks (a pub/sub connection lost): translated.
            ours = _translated(leaf)
            if ours is not None:
                raise ours from leaf
        raise leaf from None


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception inside *group* (nested groups included), if one."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        else:
            leaves.append(exc)
    if len(leaves) > 1:
        # One cancellation seen by several tasks is still one cancellation.
        cancelled = anyio.get_cancelled_exc_class()
        if all(isinstance(leaf, cancelled) for leaf in leaves):
            return leaves[0]
    return leaves[0] if len(leaves) == 1 else None
