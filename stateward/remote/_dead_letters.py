"""What the owner does with an entry it refuses before applying anything.

A malformed entry, one over the message cap, or a send its client may not
make is never applied and never stops the owner: its sender gets a
``refused`` reply when the entry says who it is, the entry's id and the
reason go to ``sw:{<name>}:dead`` (the newest 10,000 kept), and the entry
is acknowledged so that no owner reads it again.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Final

from .._errors import StatewardError
from . import protocol
from ._replies import REPLY_MAXLEN, id_of, refused_entry

if TYPE_CHECKING:
    from ._redis import Connection, Entry

__all__ = ["dead_letter"]

logger = logging.getLogger(__name__)

DEAD_MAXLEN: Final = 10_000


async def dead_letter(
    writer: Connection, keys: protocol.Keys, entry: Entry, exc: StatewardError
) -> None:
    """Refuse *entry* for *exc*: tell its sender, keep it dead, acknowledge it."""
    entry_id, fields = entry
    reason = f"{type(exc).__name__}: {exc}"[:500]
    logger.warning("refused entry %s of %r: %s", entry_id.decode(), keys.name, reason)
    client = protocol.client_of(fields)
    request_id = id_of(fields)
    if client is not None and request_id is not None:
        with contextlib.suppress(StatewardError):  # (encoding it, too)
            reply = refused_entry(request_id, exc, reason)
            await writer.xadd(keys.reply(client), reply, maxlen=REPLY_MAXLEN)
    dead = {b"entry": entry_id, b"reason": reason.encode()}
    await writer.xadd(keys.dead, dead, maxlen=DEAD_MAXLEN)
    await writer.xack(keys.actions, keys.GROUP, [entry_id])
