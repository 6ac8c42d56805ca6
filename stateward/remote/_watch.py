"""The remote watch: the owner's feed, read with plain XREADs, as events.

``RemoteState.watch`` reads ``sw:{<name>}:feed`` after a revision,
filters each entry's changes by the pattern (as the tree has them: no
parse) and says every revision the feed lost (trimmed, or lost with
Redis) as one :class:`~stateward.Resync`, never a silent gap. Redis going
away is waited out: the owner publishes again what it lost.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .._errors import RemoteUnavailableError, StatewardError
from ..messages.events import Resync, StateChanged
from ..paths import format_path
from ._feed_format import decode_feed
from ._redis import BLOCK_MS, Backoff

if TYPE_CHECKING:
    from collections.abc import Iterator

    from anyio.streams.memory import MemoryObjectSendStream

    from ..paths import PatternTrie
    from ._redis import Connection

__all__ = ["feed_events", "pump_feed"]

logger = logging.getLogger(__name__)


async def pump_feed(
    conn: Connection,
    key: str,
    send: MemoryObjectSendStream[StateChanged | Resync],
    trie: PatternTrie[int],
    pattern: str,
    after: int,
) -> None:
    """Send the feed after revision *after*, filtered by *trie*; gaps as Resync."""
    expected = after + 1
    last_id = f"{after}-0".encode()
    backoff = Backoff()
    while True:
        try:
            # On this handle's client: coredis gives a blocking read a
            # connection of its own, so watchers never delay requests.
            entries = await conn.xread(key, last_id, count=256, block_ms=BLOCK_MS)
        except RemoteUnavailableError:
            # Waited out: the owner publishes again what Redis lost.
            await backoff.wait()
            continue
        backoff.reset()
        for event in feed_events(entries, trie, pattern, expected):
            if isinstance(event, int):
                expected = event
            else:
                await send.send(event)
        if entries:
            last_id = entries[-1][0]


def feed_events(
    entries: list[tuple[bytes, dict[bytes, bytes]]],
    trie: PatternTrie[int],
    pattern: str,
    expected: int,
) -> Iterator[StateChanged | Resync | int]:
    """The events of *entries*; an int is the next revision expected."""
    for _, fields in entries:
        try:
            first, revision, action_id, source, payload, changes = decode_feed(fields)
        except StatewardError as exc:
            logger.warning("watch: skipping a bad feed entry: %s", exc)
            continue
        if revision < expected:
            continue  # published again after Redis lost it: seen
        if first > expected or action_id is None:
            # Revisions this loop will never see: say so.
            gap_end = revision if action_id is None else first - 1
            yield Resync(pattern, gap_end - expected + 1, expected, gap_end)
            expected = gap_end + 1
            if action_id is None:
                yield expected
                continue
        expected = revision + 1
        for segments, kind, old, new in changes:
            if trie.match(segments):  # (as the tree has them: no parse)
                yield StateChanged(
                    revision=revision,
                    path=format_path(segments),
                    kind=kind,
                    old_value=old,
                    new_value=new,
                    action_id=action_id,
                    source=source,
                    payload=payload,
                )
        yield expected
