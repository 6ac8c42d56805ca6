"""What the owner answers on a client's reply stream, and how the client reads it.

Every reply crosses as one stream entry of at most
:data:`~.protocol.MAX_MESSAGE_BYTES`. One that would be larger is never
sent, nor does it stop the owner: a value read is refused with a typed
error naming the path, and the handlers' messages in an acks report are
shortened. A value far over the cap is known to be so after a walk of
about the cap's worth of it, not encoded whole on the owner's loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from .._errors import (
    ActionRejectedError,
    CompactedError,
    InvalidActionError,
    PathConflictError,
    PathNotFoundError,
    RemoteError,
    RevisionMismatchError,
    StatewardError,
)
from .._json import surely_larger
from ..actors._handler import cut_message
from ..messages.acks import ResultCode
from ..paths import format_path
from . import protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..messages.acks import AckReport

__all__ = [
    "REPLY_MAXLEN",
    "acks_reply",
    "decode_reply",
    "encode_within",
    "id_of",
    "invalid",
    "refusal_error",
    "refused_entry",
    "rejected",
    "value_reply",
]

REPLY_MAXLEN: Final = 10_000
"""Entries a client's reply stream (and a delivery stream) keeps."""


def id_of(fields: object) -> str | None:
    """The request id of a stream entry that may be malformed, if it has one."""
    try:
        message = protocol.decode_fields(fields)
    except StatewardError:
        return None
    value = message.get("id")
    return value if type(value) is str and 0 < len(value) <= 256 else None


def refused_entry(
    request_id: str, exc: StatewardError, reason: str
) -> dict[bytes, bytes]:
    """The reply to an entry refused before it was read as a request (dead-lettered)."""
    reply = {
        "id": request_id,
        "kind": "refused",
        "error": type(exc).__name__,
        "reason": reason,
    }
    return protocol.encode(reply)


def invalid(exc: InvalidActionError) -> dict[str, Any]:
    """The refusal of a request that is not a valid one (the client raises it)."""
    return {
        "kind": "refused",
        "error": "InvalidActionError",
        "field": exc.field,
        "reason": exc.reason,
    }


def rejected(exc: ActionRejectedError) -> dict[str, Any]:
    """The rejection of an action the tree refused (the client raises it)."""
    reply: dict[str, Any] = {
        "kind": "rejected",
        "error": type(exc).__name__,
        "path": exc.path,
        "reason": exc.reason,
    }
    if isinstance(exc, RevisionMismatchError):
        reply["expected"], reply["actual"] = exc.expected, exc.actual
    return reply


def encode_within(message: dict[str, Any]) -> dict[bytes, bytes] | None:
    """*message* as a stream entry, or None when it is over the message cap."""
    if surely_larger(message, protocol.MAX_MESSAGE_BYTES):
        return None
    try:
        return protocol.encode(message)
    except InvalidActionError:  # (over the cap: known once encoded)
        return None


def value_reply(
    request: str, path: tuple[str, ...], value: object
) -> dict[bytes, bytes]:
    """The reply to a get of *path*: its *value*, or a refusal if too large."""
    fields = encode_within({"id": request, "kind": "value", "value": value})
    if fields is not None:
        return fields
    cap = protocol.MAX_MESSAGE_BYTES
    reason = (
        f"the value at {format_path(path)!r} is larger than the {cap:,}-byte "
        "message cap: read a part of it (a longer path)"
    )
    return protocol.encode(
        {"id": request, "kind": "refused", "error": "InvalidActionError"}
        | {"field": "path", "reason": reason}
    )


def acks_reply(action: str, report: AckReport) -> dict[bytes, bytes]:
    """The acks of a remote action, as *report* has them.

    The handlers' messages are shortened when the whole would be over the
    message cap (a handler may answer with any text), and left out if even
    that is not enough: every code, and who did not answer, cross (short
    of thousands of subscribers, where the result code alone does).
    """
    acks = [(a.subscriber, int(a.ras), a.message) for a in report.acks]
    reply: dict[str, Any] = {
        "id": action,
        "kind": "acks",
        "result": int(report.result),
        "acks": [list(a) for a in acks],
        "missing": list(report.missing),
    }
    fields = encode_within(reply)
    if fields is None:
        # (a character takes at most 6 bytes in the JSON: "\u0001")
        keep = max(256, protocol.MAX_MESSAGE_BYTES // (8 * max(1, len(acks))))
        reply["acks"] = [[s, ras, cut_message(m, keep)] for s, ras, m in acks]
        fields = encode_within(reply)
    if fields is None:
        reply["acks"] = [[s, ras, ""] for s, ras, _ in acks]
        fields = encode_within(reply)
    if fields is None:  # (thousands of subscribers: the result code alone)
        reply["acks"], reply["missing"] = [], []
        fields = protocol.encode(reply)
    return fields


def decode_reply(fields: object) -> dict[str, Any]:
    """Decode a reply entry (from the owner): a JSON object with an ``id``.

    The fields that the client reads of a reply of each ``kind`` are
    checked: present, and of their types. A kind this client does not know
    passes (it raises a ``RemoteError`` naming it to whoever waits).

    Raises:
        InvalidActionError: It is not a reply this client can read.
    """
    message = protocol.decode_fields(fields)
    if type(message.get("id")) is not str or type(message.get("kind")) is not str:
        raise InvalidActionError("reply", "has no str 'id' and 'kind'")
    kind = message["kind"]
    for key, check in _READ.get(kind, {}).items():
        if key not in message:
            raise InvalidActionError("reply", f"a {kind} reply lacks {key!r}")
        check(message[key], key)
    if kind in ("rejected", "refused"):
        for key, check in _REFUSAL.items():  # (each read where present)
            if key in message:
                check(message[key], key)
    error = message.get("error")
    needed = _NUMBERS_OF.get(error, ()) if type(error) is str else ()
    for key in needed:
        if key not in message:
            raise InvalidActionError("reply", f"a {error} lacks {key!r}")
    return message


def _of(*types: type) -> Callable[[object, str], object]:
    return lambda value, key: protocol.typed(value, types, key)


def _strs(value: object, key: str) -> None:
    if type(value) is not list or not all(type(item) is str for item in value):
        raise InvalidActionError(key, "must be a list of str")


def _acks(value: object, key: str) -> None:
    if type(value) is not list or not all(
        type(item) is list
        and len(item) == 3
        and type(item[0]) is str
        and type(item[1]) is int
        and type(item[2]) is str
        for item in value
    ):
        raise InvalidActionError(key, "must be a list of [subscriber, code, message]")


def _result(value: object, key: str) -> None:
    if type(value) is not int or value not in _RESULTS:
        raise InvalidActionError(key, f"{value!r:.20} is not a result code")


def _anything(_value: object, _key: str) -> None:
    pass


_RESULTS: Final = frozenset(int(code) for code in ResultCode)
_TEXT: Final = _of(str)
_INT: Final = _of(int)
_REFUSAL: Final[dict[str, Callable[[object, str], object]]] = {
    "error": _TEXT,
    "field": _TEXT,
    "path": _TEXT,
    "reason": _TEXT,
    "expected": _INT,
    "actual": _INT,
    "requested": _INT,
    "oldest": _INT,
}
_READ: Final[dict[str, dict[str, Callable[[object, str], object]]]] = {
    "applied": {
        "revision": _INT,
        "changed": _of(bool),
        "subscribers": _strs,
        "derive_errors": _strs,
    },
    "acks": {"result": _result, "acks": _acks, "missing": _strs},
    "value": {"value": _anything},
    "subscribed": {"revision": _INT, "epoch": _TEXT, "seq": _INT},
}
"""What the client reads of each kind of reply, and how to check it."""
_NUMBERS_OF: Final = {
    "RevisionMismatchError": ("expected", "actual"),
    "CompactedError": ("requested", "oldest"),
}


_REJECTIONS: Final[dict[str, type[ActionRejectedError]]] = {
    "ActionRejectedError": ActionRejectedError,
    "PathConflictError": PathConflictError,
    "PathNotFoundError": PathNotFoundError,
}


def refusal_error(reply: dict[str, Any]) -> StatewardError:
    """The error a client raises for *reply*: a refusal, or one it cannot read."""
    kind = reply.get("kind")
    if kind == "malformed":
        return RemoteError(f"the owner's reply could not be read: {reply['why']}")
    name = str(reply.get("error"))
    if name == "CompactedError":
        return CompactedError(int(reply["requested"]), int(reply["oldest"]))
    if kind == "rejected":
        if name == "RevisionMismatchError":
            return RevisionMismatchError(int(reply["expected"]), int(reply["actual"]))
        cls = _REJECTIONS.get(name, ActionRejectedError)
        return cls(str(reply.get("path", "")), str(reply.get("reason", "")))
    if kind == "refused":
        field = str(reply.get("field", "request"))
        return InvalidActionError(
            field, str(reply.get("reason", "refused by the owner"))
        )
    return RemoteError(f"unexpected reply from the owner: {kind!r}")
