"""The remote feed: every released change on ``sw:{name}:feed``, read without the owner.

The owner appends each revision it has released (applied, on disk for a
persisted state, handed to its subscribers) to the feed stream under the
entry id ``<revision>-0``, and trims it by MINID to the last ``feed_size``
revisions. Watchers read it with plain XREAD: any number of them cost the
owner nothing, and a watcher resumes from any revision the stream still
holds, without gap or duplicate.

Redis may lose the stream at any time: the owner notices when it
reconnects (the stream ends below what it published) and publishes again
what its history ring, or its journal, still holds. What it can no longer
publish it marks as a gap, so a reader gets a :class:`~stateward.Resync`,
never a silent hole.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

import anyio

from .._errors import CompactedError, RemoteUnavailableError
from .._json import surely_larger
from . import protocol
from ._feed_format import encode_feed, encode_gap
from ._redis import Backoff, open_connection

if TYPE_CHECKING:
    from ..actors.handle import StateHandle
    from ..actors.persistence import FeedEntry
    from ._redis import Connection

__all__ = ["FeedPublisher"]

logger = logging.getLogger(__name__)

_CHUNK: Final = 256  # revisions per round trip


class FeedPublisher:
    """The owner's side of the feed (made and run by ``serve_redis``)."""

    def __init__(
        self, state: StateHandle, url: str, keys: protocol.Keys, size: int
    ) -> None:
        self._state = state
        self._url = url
        self._keys = keys
        self._size = size
        self.published = 0
        """The newest revision on the feed (as far as this owner knows)."""
        self.reseeds = 0
        """Times the feed was found behind (Redis lost it) and published again."""
        self.gaps = 0
        """Revisions that could not be published (marked as gaps)."""
        self.skipped = 0
        """Revisions left out of a stream far behind (older than it keeps)."""
        self._wake = anyio.Event()
        self._stream_last = 0  # the stream's last id, as far as we wrote it
        self._reseed = False

    def _tapped(self) -> None:
        self._wake.set()

    async def run(self, *, task_status: Any) -> None:
        """Publish every released revision; reconnect and re-seed after a loss."""
        remove = self._state._tap(self._tapped)
        started = False
        backoff = Backoff()
        try:
            while True:
                try:
                    async with open_connection(self._url, name="sw-owner-feed") as conn:
                        await self._seed(conn)
                        if not started:
                            started = True
                            task_status.started()
                        backoff.reset()
                        await self._follow(conn)
                except RemoteUnavailableError as exc:
                    if not started:
                        raise
                    logger.warning("feed: Redis went away (%s); reconnecting", exc)
                    await backoff.wait()
        finally:
            remove()

    async def _seed(self, conn: Connection) -> None:
        """Find where the stream ends; publish again what Redis lost."""
        released = self._state._released
        bounds = await conn.bounds(self._keys.feed)
        last = 0 if bounds is None else bounds[1]
        if last > released:
            # A feed of another life of this state (its directory was reset):
            # its revisions mean other changes now.
            logger.warning(
                "feed: %s ends at %d, past this state: reset", self._keys.feed, last
            )
            await conn.delete([self._keys.feed])
            last = 0
        if last < self.published:
            self._lost(last)
        # Publish from where the stream ends, or the last feed_size revisions
        # of a new stream. A stream that fell further behind than it keeps
        # (Redis away while the state moved on) resumes there too: what came
        # before would be trimmed as it was written, after each window of
        # it was read from the files. A reader sees the revisions skipped
        # by their numbers, as a Resync.
        start = max(last, released - self._size, 0)
        if last and start > last:
            self.skipped += start - last
            logger.warning(
                "feed: %s is %d revisions behind, more than it keeps: "
                "revisions %d..%d are skipped",
                self._keys.feed,
                released - last,
                last + 1,
                start,
            )
        self.published = start
        self._stream_last = last
        await self._publish(conn, released)

    def _lost(self, last: int) -> None:
        self.reseeds += 1
        logger.warning(
            "feed: Redis lost revisions %d..%d: publishing them again",
            last + 1,
            self.published,
        )

    async def _follow(self, conn: Connection) -> None:
        while True:
            if self._reseed:
                self._reseed = False
                await self._seed(conn)
                continue
            released = self._state._released
            if released > self.published:
                await self._publish(conn, released)
                continue
            wake = self._wake = anyio.Event()
            if self._state._released == self.published:
                with anyio.move_on_after(5):  # the tap may come with no change
                    await wake.wait()

    async def _publish(self, conn: Connection, until: int) -> None:
        after = self.published
        while after < until:
            # Beyond the history ring, the files are read once per window of
            # feed_size revisions, not once per chunk of 256 (each read
            # decodes the snapshot: 40 of them for a new feed of 10,000).
            window = min(until, after + max(_CHUNK, self._size))
            try:
                entries = await self._state._changes_after(after, window)
            except CompactedError as exc:
                # Gone from the history and there is no journal to read.
                first, last = after + 1, max(exc.oldest, after + 1)
                gap = encode_gap(first, last, "older than the owner keeps")
                if not await self._append(conn, [(last, gap)]):
                    return  # the stream was lost: _follow seeds it again
                self.gaps += last - first + 1
                after = self.published = last
                continue
            start = 0
            while after < window:
                upto = min(window, after + _CHUNK)
                end = start
                while end < len(entries) and entries[end].revision <= upto:
                    end += 1
                batch = _batch(entries[start:end], after, upto)
                if not await self._append(conn, batch):
                    return  # the stream was lost: _follow seeds it again
                start = end
                after = self.published = upto

    async def _append(
        self, conn: Connection, batch: list[tuple[int, dict[bytes, bytes]]]
    ) -> bool:
        """Append *batch*; False if the stream had lost what we wrote before."""
        newest = batch[-1][0]
        before = await conn.xadd_at(
            self._keys.feed, batch, min_id=newest - self._size + 1
        )
        if before != self._stream_last:
            # Redis restarted (or was flushed) since our last append: what
            # we just wrote sits on a stream that lost the rest. Start over
            # (_seed counts it).
            await conn.delete([self._keys.feed])
            self._stream_last = 0
            self._reseed = True
            return False
        self._stream_last = newest
        return True


def _encode(entry: FeedEntry) -> dict[bytes, bytes]:
    """*entry* as a feed entry; old values over the message cap left out.

    A large subtree replaced or deleted would have its whole old value
    encoded on the owner's loop (a fifth of a second for 300,000 leaves),
    only to be left out once found over the feed's cap, or published as
    megabytes that every watcher reads. Old values that surely pass the
    message cap together (a walk of about that much of them says so) are
    left out at once, as the protocol leaves out any that make an entry
    too large.
    """
    changes = entry.changes
    olds = surely_larger([c.old for c in changes], protocol.MAX_MESSAGE_BYTES)
    return encode_feed(
        entry.revision,
        entry.action_id,
        entry.source,
        entry.payload,
        [(c.path, c.kind.value, None if olds else c.old, c.new) for c in changes],
    )


def _batch(
    entries: list[FeedEntry], after: int, upto: int
) -> list[tuple[int, dict[bytes, bytes]]]:
    """Revisions *after* + 1 .. *upto* as feed entries, a gap for any missing."""
    batch: list[tuple[int, dict[bytes, bytes]]] = []
    expected = after + 1
    for entry in entries:
        if entry.revision > expected:
            gap = encode_gap(expected, entry.revision - 1, "missing")
            batch.append((entry.revision - 1, gap))
        batch.append((entry.revision, _encode(entry)))
        expected = entry.revision + 1
    if expected <= upto:
        batch.append((upto, encode_gap(expected, upto, "missing")))
    return batch
