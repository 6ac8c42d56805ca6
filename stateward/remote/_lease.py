"""The owner's lease: one process serves a state's name at a time.

Two owners of one name would each apply the requests they happen to read
(the consumer group hands every entry to one of them): two states, each
with half of the writes, and nothing said. So an owner holds
``sw:{<name>}:owner`` (its token, with a time to live) while it serves,
renews it every third of the lease, and gives it back when it stops.

* A new owner waits for a lease held by another (one killed, say, whose
  lease runs out) up to the lease and a second more; one still renewed by
  then belongs to an owner that serves, and the new one refuses to start
  (:class:`~stateward.RemoteError` naming the holder).
* An owner that finds its lease held by another (it was away longer than
  the lease, and another took over) stops serving at once.
* Redis losing its data loses the lease too: the owner claims it again at
  its next renewal.

A renewal reads the holder and then sets the time to live (GET, then
PEXPIRE: no script, so the owner's ACL needs no scripting). Between the
two, the lease has two thirds of its time left, so it cannot lapse; were it
to, the PEXPIRE would only lengthen the other owner's lease, whose token
this owner then finds at its next renewal.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Final, final

import anyio

from .._errors import RemoteError, RemoteUnavailableError
from ._keys import unique_name
from ._redis import open_connection

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from ._redis import Connection

__all__ = ["LEASE", "OwnerLease", "holding", "keep", "still_held"]

LEASE: Final = 15.0
"""Seconds an owner's lease lasts unless renewed (``serve_redis(lease=...)``)."""


@final
class OwnerLease:
    """One owner's claim on a name; its methods run on the owner's loop."""

    def __init__(self, conn: Connection, key: str, seconds: float) -> None:
        self._conn = conn
        self._key = key
        self._ms = max(1, round(seconds * 1000))
        self.seconds = seconds
        self.token = unique_name()
        """This owner's token: the lease's value while it holds it."""

    async def acquire(self) -> None:
        """Take the lease, waiting for another holder's to run out.

        Raises:
            RemoteError: Another owner kept renewing it for longer than a
                lease lasts: it serves this name.
            RemoteUnavailableError: Redis cannot be reached.
        """
        holder = None
        with anyio.move_on_after(self.seconds + 1.0):
            delay = 0.05
            while True:
                if await self._conn.claim(self._key, self.token, self._ms):
                    return
                holder = await self._conn.get_text(self._key)
                if holder is None:
                    continue  # it ran out just now: claim it
                await anyio.sleep(delay)
                delay = min(delay * 2, 1.0)
        msg = (
            f"{self._key} is held by another owner ({holder}), which kept it "
            f"for more than {self.seconds:g} s: one process serves a name"
        )
        raise RemoteError(msg)

    async def renew(self) -> str | None:
        """Keep the lease: None, or the token of another owner that holds it now.

        Raises:
            RemoteUnavailableError: Redis cannot be reached (try again).
        """
        holder = await self._conn.get_text(self._key)
        if holder is None:  # Redis lost it (or it ran out): claim it again
            if await self._conn.claim(self._key, self.token, self._ms):
                return None
            return await self._conn.get_text(self._key) or "nobody"
        if holder != self.token:
            return holder
        await self._conn.expire_in(self._key, self._ms)
        return None

    async def release(self) -> None:
        """Give the lease back, if this owner still holds it."""
        if await self._conn.get_text(self._key) == self.token:
            await self._conn.delete([self._key])


@contextlib.asynccontextmanager
async def holding(url: str, key: str, seconds: float) -> AsyncIterator[OwnerLease]:
    """Hold the lease *key* for the block, on a connection of its own.

    Opened in the caller's task, not in a task the block's end cancels, so
    that the lease is given back when the block ends (best effort, 2 s at
    most: a lease not given back runs out by itself).

    Raises:
        RemoteError: Another owner serves the name.
        RemoteUnavailableError: Redis cannot be reached.
    """
    async with open_connection(url, name="sw-owner-lease") as conn:
        lease = OwnerLease(conn, key, seconds)
        await lease.acquire()
        try:
            yield lease
        finally:
            with (
                anyio.move_on_after(2.0, shield=True),
                contextlib.suppress(RemoteError),
            ):
                await lease.release()


async def keep(lease: OwnerLease, lost: Callable[[str], Awaitable[object]]) -> None:
    """Renew *lease* every third of its time until cancelled.

    Redis away is waited out (nobody reads the requests meanwhile either).
    Finding it held by another owner awaits *lost(holder)* and returns.
    """
    while True:
        await anyio.sleep(lease.seconds / 3)
        try:
            if not await still_held(lease, lost):
                return
        except RemoteUnavailableError:
            continue


async def still_held(
    lease: OwnerLease, lost: Callable[[str], Awaitable[object]]
) -> bool:
    """Renew *lease*; held by another owner now: await *lost(holder)*, False.

    Raises:
        RemoteUnavailableError: Redis cannot be reached (try again).
    """
    holder = await lease.renew()
    if holder is None:
        return True
    await lost(holder)
    return False
