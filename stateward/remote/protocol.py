"""The remote protocol: key names, message encoding and its limits (pure, no I/O).

Every key of one state lives under ``sw:{<name>}:`` (the braces are a Redis
Cluster hash tag: one slot per state; :mod:`._keys` names them and checks
names, and its names are re-exported here)::

    sw:{jobs}:actions          stream, consumer group "owner": requests in
    sw:{jobs}:reply:<client>   stream per client: the owner's replies
    sw:{jobs}:dead             stream: refused entries, with the reason

A request or a reply is one stream entry with one field, ``m``: a JSON object.
Requests (client -> owner)::

    {"v": 1, "op": "send", "id": ID, "client": C, "durable": true|false|null,
     "action": ACTION}
    {"v": 1, "op": "get", "id": ID, "client": C, "path": [...], "default": JSON}

``ACTION`` is ``{"type": "Set", "path": ..., "value": ..., ...}`` with the
fields of the action class (see :func:`encode_action`). Replies (owner ->
client) carry the request's ``id`` and a ``kind``: ``applied``, ``rejected``,
``refused``, ``acks`` or ``value``.

Decoding is strict: the size is checked before anything is parsed, the JSON
must be strict (no NaN), every object must have exactly the expected keys
with the expected types, and actions are rebuilt through their constructors,
so a remote action passes the very checks a local one does.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Final, cast, final

import attrs

from .._checks import check_int, check_seconds
from .._errors import InvalidActionError, StatewardError
from .._json import is_text
from ..messages.actions import Action, Delete, Merge, Ping, Set, Transaction
from ..messages.events import ChangeKind
from ..paths import PathLike, format_path, parse_path, parse_pattern
from ._keys import Keys, acl_rules, check_name

if TYPE_CHECKING:
    from .._json import JSON

__all__ = [
    "FIELD",
    "MAX_MESSAGE_BYTES",
    "PROTOCOL_VERSION",
    "Keys",
    "Request",
    "acl_rules",
    "change_kind",
    "check_keys",
    "check_name",
    "count",
    "decode_action",
    "decode_fields",
    "decode_request",
    "dumps_message",
    "encode",
    "encode_action",
    "new_request_id",
    "typed",
]

PROTOCOL_VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = 1 << 20
"""Largest request or reply accepted, in bytes (the default action size limit
fits: an action's values are estimated at <= 1 MiB)."""
FIELD: Final = b"m"
"""The one field of every stream entry: its JSON message."""


def new_request_id() -> str:
    """A fresh unique id for a request that is not an action (a get)."""
    return "get-" + os.urandom(12).hex()


def encode(message: dict[str, Any]) -> dict[bytes, bytes]:
    """Encode one message as a stream entry's fields.

    Raises:
        InvalidActionError: It is larger than :data:`MAX_MESSAGE_BYTES`, or
            holds what JSON in UTF-8 cannot (NaN, a lone surrogate, an object).
    """
    data = dumps_message(message)
    if len(data) > MAX_MESSAGE_BYTES:
        reason = f"{len(data)} bytes, over the {MAX_MESSAGE_BYTES}-byte message cap"
        raise InvalidActionError("message", reason)
    return {FIELD: data}


def dumps_message(message: dict[str, Any]) -> bytes:
    """*message* as strict JSON in UTF-8.

    Raises:
        InvalidActionError: It holds what that cannot (NaN, a lone
            surrogate, an object that is no JSON).
    """
    try:
        return json.dumps(message, ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:  # (UnicodeEncodeError included)
        reason = f"cannot be encoded: {type(exc).__name__}: {exc}"
        raise InvalidActionError("message", reason[:200]) from None


def _refuse_constant(name: str) -> None:
    msg = f"{name} is not JSON"
    raise ValueError(msg)


_STRICT_DECODE: Final = json.JSONDecoder(parse_constant=_refuse_constant).decode


def decode_fields(fields: object, limit: int = MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """The JSON object of a stream entry; its size (at most *limit*) checked first.

    Raises:
        InvalidActionError: It is not one field ``m`` holding such an object.
    """
    if not isinstance(fields, dict) or set(fields) != {FIELD}:
        raise InvalidActionError("entry", "must have exactly one field 'm'")
    data = fields[FIELD]
    if not isinstance(data, bytes):
        raise InvalidActionError("entry", "field 'm' is not bytes")
    return loads_object(data, limit)


def loads_object(data: bytes, limit: int = MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """Parse one untrusted message: a strict JSON object of at most the cap.

    The size is checked before anything is parsed; NaN and Infinity, bad
    UTF-8, a lone surrogate (escaped) and nesting too deep for the parser
    are refused.

    Raises:
        InvalidActionError: It is not such an object.
    """
    if len(data) > limit:
        reason = f"{len(data)} bytes, over the {limit}-byte message cap"
        raise InvalidActionError("message", reason)
    try:
        message = _STRICT_DECODE(data.decode())
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError included
        reason = f"not strict JSON: {type(exc).__name__}: {exc}"
        raise InvalidActionError("message", reason[:200]) from None
    if type(message) is not dict:
        raise InvalidActionError("message", "is not a JSON object")
    if b"\\ud" in data or b"\\uD" in data:  # an escaped surrogate: a lone one?
        _check_texts(message)
    return message


def _check_texts(message: dict[str, Any]) -> None:
    """Refuse a lone surrogate in any key or string of *message*.

    JSON may escape one (a backslash, ``ud800``), and the decoder takes it:
    what holds it could not be encoded again (a journal record, a reply).
    """
    stack: list[Any] = [message]
    while stack:
        item = stack.pop()
        if type(item) is str:
            if not is_text(item):
                raise InvalidActionError("message", "lone surrogate in a string")
        elif type(item) is dict:
            stack.extend(item)
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)


def check_keys(
    obj: dict[str, Any], required: set[str], optional: set[str], what: str
) -> None:
    """Check that *obj* has the *required* keys, and no others than *optional*.

    Raises:
        InvalidActionError: Named *what*, listing the missing and unknown keys.
    """
    keys = set(obj)
    missing = required - keys
    extra = keys - required - optional
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {sorted(missing)}")
        if extra:
            parts.append(f"unknown {sorted(extra)}")
        raise InvalidActionError(what, ", ".join(parts))


def typed(value: object, types: tuple[type, ...], what: str) -> Any:
    """*value*, if its type is exactly one of *types* (a bool is no int).

    Raises:
        InvalidActionError: Named *what*.
    """
    if type(value) not in types:
        names = " or ".join(t.__name__ for t in types)
        reason = f"must be {names} (got {type(value).__name__})"
        raise InvalidActionError(what, reason)
    return value


def count(value: object, what: str) -> int:
    """*value*, if it is an int >= 0 (a revision, a sequence number, a count).

    Raises:
        InvalidActionError: Named *what*.
    """
    check_int(what, value, 0)
    return cast("int", value)


_KINDS: Final = {kind.value: kind for kind in ChangeKind}


def change_kind(value: object, what: str) -> ChangeKind:
    """The :class:`~stateward.ChangeKind` that *value* names (``"created"``...).

    Raises:
        InvalidActionError: Named *what*: it names none.
    """
    if type(value) is not str or value not in _KINDS:
        raise InvalidActionError(what, f"unknown change kind {value!r:.40}")
    return _KINDS[value]


@final
@attrs.frozen
class Request:
    """A decoded request: what a client asked the owner."""

    op: str
    """``"send"`` or ``"get"``."""
    id: str
    """The action's id (send) or the request's (get)."""
    client: str
    """The client that sent it; its replies go to its reply stream."""
    durable: bool | None = None
    """For a send: wait for the journal's fsync (None: the state's default)."""
    action: Action | None = None
    """For a send: the action, rebuilt and validated."""
    path: tuple[str, ...] = ()
    """For a get: the path."""
    default: JSON = None
    """For a get: the value when the path is missing."""
    subscriber: str = ""
    """For a subscribe or unsubscribe: the remote subscriber's name."""
    pattern: str = ""
    """For a subscribe: its pattern."""
    timeout: float = 0.0
    """For a subscribe: seconds the owner waits for each Ack."""
    from_revision: int | None = None
    """For a subscribe: replay the changes after this revision first."""


def client_of(fields: object) -> str | None:
    """The valid client name of an entry, if it has one (to send a refusal to)."""
    try:
        message = decode_fields(fields)
        return check_name(message.get("client"), "client")
    except StatewardError:
        return None


def decode_request(fields: object) -> Request:
    """Decode and validate one request entry.

    Raises:
        StatewardError: A typed error naming what is wrong (an
            ``InvalidActionError``, ``InvalidPathError`` or
            ``InvalidValueError``); nothing was applied.
    """
    message = decode_fields(fields)
    op = message.get("op")
    if op == "send":
        check_keys(
            message, {"v", "op", "id", "client", "durable", "action"}, set(), "send"
        )
    elif op == "get":
        check_keys(
            message, {"v", "op", "id", "client", "path", "default"}, set(), "get"
        )
    elif op == "subscribe":
        required = {"v", "op", "id", "client", "subscriber", "pattern", "timeout"}
        check_keys(message, required, {"from_revision"}, "subscribe")
    elif op == "unsubscribe":
        check_keys(
            message, {"v", "op", "id", "client", "subscriber"}, set(), "unsubscribe"
        )
    else:
        reason = f"must be send, get, subscribe or unsubscribe (got {op!r:.40})"
        raise InvalidActionError("op", reason)
    if message["v"] != PROTOCOL_VERSION or type(message["v"]) is not int:
        reason = f"protocol version {message['v']!r:.20} is not {PROTOCOL_VERSION}"
        raise InvalidActionError("v", reason)
    client = check_name(message["client"], "client")
    request_id = typed(message["id"], (str,), "id")
    if not request_id or len(request_id) > 256:
        raise InvalidActionError("id", "must be a non-empty str of <= 256 characters")
    if op in ("subscribe", "unsubscribe"):
        subscriber = check_name(message["subscriber"], "subscriber")
        if op == "unsubscribe":
            return Request(op, request_id, client, subscriber=subscriber)
        pattern = format_path(
            parse_pattern(typed(message["pattern"], (str,), "pattern"))
        )
        timeout = typed(message["timeout"], (int, float), "timeout")
        check_seconds("timeout", timeout, positive=True)
        if timeout > 3600:
            raise InvalidActionError("timeout", "must be <= 3600 seconds")
        since = typed(message.get("from_revision"), (int, type(None)), "from_revision")
        if since is not None and since < 0:
            raise InvalidActionError("from_revision", "must be an int >= 0")
        return Request(
            op,
            request_id,
            client,
            subscriber=subscriber,
            pattern=pattern,
            timeout=float(timeout),
            from_revision=since,
        )
    if op == "get":
        path = typed(message["path"], (list,), "path")
        segments = parse_path(tuple(path))
        default = Set("", message["default"]).value  # validated as any value is
        return Request("get", request_id, client, path=segments, default=default)
    durable = typed(message["durable"], (bool, type(None)), "durable")
    action = decode_action(message["action"])
    if action.id != request_id:
        raise InvalidActionError("id", "the request's id is not its action's id")
    return Request("send", request_id, client, durable=durable, action=action)


_COMMON: Final = {"type", "id", "source", "payload"}
_FIELDS: Final[dict[str, tuple[set[str], set[str]]]] = {
    "Set": ({"path", "value"}, {"eq"}),
    "Delete": ({"path"}, {"missing_ok"}),
    "Merge": ({"path", "mapping"}, {"eq"}),
    "Ping": ({"path"}, set()),
    "Transaction": ({"actions"}, {"if_revision"}),
}


def encode_action(action: Action) -> dict[str, Any]:
    """Encode *action* as a JSON object (nested Transactions included).

    Raises:
        InvalidActionError: It carries what JSON cannot (an ``eq`` callable).
    """
    out: dict[str, Any] = {
        "type": type(action).__name__,
        "id": action.id,
        "source": action.source,
        "payload": action.payload,
    }
    if isinstance(action, Set | Merge):
        if not isinstance(action.eq, bool):
            reason = "an eq callable cannot be sent to another process"
            raise InvalidActionError("eq", reason)
        out["eq"] = action.eq
    if isinstance(action, Set):
        out["path"], out["value"] = action.path, action.value
    elif isinstance(action, Delete):
        out["path"], out["missing_ok"] = action.path, action.missing_ok
    elif isinstance(action, Merge):
        out["path"], out["mapping"] = action.path, action.mapping
    elif isinstance(action, Ping):
        out["path"] = action.path
    elif isinstance(action, Transaction):
        out["actions"] = [encode_action(a) for a in action.actions]
        out["if_revision"] = action.if_revision
    else:
        reason = f"{type(action).__name__} cannot be sent to another process"
        raise InvalidActionError("action", reason)
    return out


def decode_action(obj: object, depth: int = 0) -> Action:
    """Rebuild an action from :func:`encode_action`'s object, validating it.

    Raises:
        StatewardError: A typed error; the constructors' own checks apply
            (paths, values, sizes, nesting).
    """
    if type(obj) is not dict:
        raise InvalidActionError("action", "must be a JSON object")
    kind = obj.get("type")
    if type(kind) is not str or kind not in _FIELDS:
        raise InvalidActionError("type", f"unknown action type {kind!r:.40}")
    required, optional = _FIELDS[kind]
    check_keys(obj, required | _COMMON, optional, kind)
    common: dict[str, Any] = {
        "id": obj["id"],
        "source": obj["source"],
        "payload": obj["payload"],
    }
    if kind == "Set":
        return Set(_path(obj["path"]), obj["value"], eq=_flag(obj, "eq"), **common)
    if kind == "Delete":
        missing_ok = _flag(obj, "missing_ok")
        return Delete(_path(obj["path"]), missing_ok=missing_ok, **common)
    if kind == "Merge":
        mapping = typed(obj["mapping"], (dict,), "mapping")
        return Merge(_path(obj["path"]), mapping, eq=_flag(obj, "eq"), **common)
    if kind == "Ping":
        return Ping(_path(obj["path"]), **common)
    inner = typed(obj["actions"], (list,), "actions")
    if depth >= 64:
        raise InvalidActionError("actions", "Transactions nested too deep")
    actions = [decode_action(item, depth + 1) for item in inner]
    if_revision = obj.get("if_revision")
    return Transaction(actions, if_revision=if_revision, **common)


def _path(value: object) -> PathLike:
    path: str = typed(value, (str,), "path")  # the canonical string form
    return path


def _flag(obj: dict[str, Any], key: str) -> bool:
    return typed(obj.get(key, True), (bool,), key)  # type: ignore[no-any-return]
