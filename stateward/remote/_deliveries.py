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

from typing import Any

from .._errors import InvalidActionError
from ..messages.events import ChangeKind, Resync, StateChanged
from .protocol import check_keys, check_name, decode_fields, encode, typed

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

    Raises:
        StatewardError: It is not a delivery this client can read.
    """
    message = decode_fields(fields)
    sub = check_name(message.get("sub"), "sub")
    epoch: str = typed(message.get("epoch"), (str,), "epoch")
    seq = typed(message.get("seq"), (int,), "seq")
    if message.get("kind") == "resync":
        return (
            sub,
            epoch,
            seq,
            Resync(
                message["pattern"],
                message["dropped"],
                message["first"],
                message["last"],
            ),
        )
    try:
        event = StateChanged(
            message["revision"],
            message["path"],
            ChangeKind(message["change"]),
            message["old"],
            message["new"],
            message["action_id"],
            message["source"],
            message["payload"],
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidActionError("event", f"malformed: {exc!r:.100}") from None
    return sub, epoch, seq, event


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
    if not -(2**31) <= ras < 2**31:
        raise InvalidActionError("ras", f"{ras} is outside the RAS code range")
    text = typed(message["message"], (str,), "message")
    return client, sub, seq, ras, text[:1000]
