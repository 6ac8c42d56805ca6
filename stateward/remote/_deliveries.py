"""A remote subscriber's deliveries (owner to client) and its Acks (back).

Each delivery is one entry of the subscriber's stream ``sw:{<name>}:deliver:<sub>``
(:meth:`~.protocol.Keys.deliver`), each Ack one entry of ``sw:{<name>}:acks``
(:attr:`~.protocol.Keys.acks`); both one JSON object in the field ``m``::

    {"sub": S, "epoch": E, "seq": N, "kind": "event", "revision": R,
     "path": P, "change": K, "old": JSON, "new": JSON, "action_id": ID,
     "source": str|null, "payload": JSON}
    {"sub": S, "epoch": E, "seq": N, "kind": "resync", "pattern": PATTERN,
     "dropped": N, "first": R, "last": R}
    {"client": C, "sub": S, "seq": N, "ras": CODE, "message": TEXT}
"""

from __future__ import annotations

from typing import Any, Final

from .._errors import InvalidActionError
from ..actors._handler import RAS_BOUND, cut_message
from ..messages.events import Resync, StateChanged
from ..paths import parse_path, parse_pattern
from .protocol import (
    change_kind,
    check_keys,
    check_name,
    count,
    decode_fields,
    encode,
    typed,
)

__all__ = ["decode_ack", "decode_event", "encode_event"]


def encode_event(
    subscriber: str, epoch: str, seq: int, event: object
) -> dict[bytes, bytes]:
    """Encode one event for a remote subscriber's delivery stream.

    *epoch* names the owner-side proxy that sent it (a new one after an owner
    restart), *seq* counts its events: a client handles only the current
    epoch's events, in order.
    """
    message: dict[str, Any] = {"sub": subscriber, "epoch": epoch, "seq": seq}
    if isinstance(event, StateChanged):
        message.update(
            kind="event",
            revision=event.revision,
            path=event.path,
            change=event.kind.value,
            old=event.old_value,
            new=event.new_value,
            action_id=event.action_id,
            source=event.source,
            payload=event.payload,
        )
    elif isinstance(event, Resync):
        message.update(
            kind="resync",
            pattern=event.pattern,
            dropped=event.dropped,
            first=event.first_revision,
            last=event.last_revision,
        )
    return encode(message)


def decode_event(fields: object) -> tuple[str, str, int, object]:
    """Decode a delivery: (subscriber, epoch, seq, StateChanged or Resync).

    Every field is checked, so that the handler gets what a local one
    would: a revision is an int >= 0, a path one that parses back, a kind a
    :class:`~stateward.ChangeKind`, a Resync's revisions in order.

    Raises:
        StatewardError: It is not a delivery this client can read.
    """
    message = decode_fields(fields)
    sub = check_name(message.get("sub"), "sub")
    epoch: str = typed(message.get("epoch"), (str,), "epoch")
    seq = count(message.get("seq"), "seq")
    kind = message.get("kind")
    if kind == "resync":
        check_keys(message, _RESYNC, set(), "resync")
        pattern: str = typed(message["pattern"], (str,), "pattern")
        parse_pattern(pattern)
        first = count(message["first"], "first")
        last = count(message["last"], "last")
        if first > last:
            raise InvalidActionError("resync", f"first {first} is after last {last}")
        dropped = count(message["dropped"], "dropped")
        return sub, epoch, seq, Resync(pattern, dropped, first, last)
    if kind != "event":
        raise InvalidActionError("kind", f"unknown delivery kind {kind!r:.40}")
    check_keys(message, _EVENT, set(), "event")
    path: str = typed(message["path"], (str,), "path")
    parse_path(path)
    source = message["source"]
    if source is not None:
        typed(source, (str,), "source")
    event = StateChanged(
        count(message["revision"], "revision"),
        path,
        change_kind(message["change"], "change"),
        message["old"],
        message["new"],
        typed(message["action_id"], (str,), "action_id"),
        source,
        message["payload"],
    )
    return sub, epoch, seq, event


_HEAD: Final = {"sub", "epoch", "seq", "kind"}
_RESYNC: Final = _HEAD | {"pattern", "dropped", "first", "last"}
_EVENT: Final = _HEAD | {
    "revision",
    "path",
    "change",
    "old",
    "new",
    "action_id",
    "source",
    "payload",
}


def decode_ack(fields: object) -> tuple[str, str, int, int, str]:
    """Decode a remote subscriber's Ack: (client, subscriber, seq, ras, message).

    Raises:
        StatewardError: A malformed or forged entry (wrong keys or types).
    """
    message = decode_fields(fields)
    check_keys(message, {"client", "sub", "seq", "ras", "message"}, set(), "ack")
    client = check_name(message["client"], "client")
    sub = check_name(message["sub"], "sub")
    seq = typed(message["seq"], (int,), "seq")
    ras = typed(message["ras"], (int,), "ras")
    if not -RAS_BOUND <= ras < RAS_BOUND:
        raise InvalidActionError("ras", f"{ras} is outside the RAS code range")
    text = typed(message["message"], (str,), "message")
    return client, sub, seq, ras, cut_message(text)
