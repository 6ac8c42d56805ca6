"""The state-signals wire protocol (PyPI ``state-signals`` 1.0.1), exactly.

Two Redis pub/sub channels, at most once, no history:

* :data:`SIGNALS` (``event-signal-pubsub``): a :class:`Signal`, exporter to
  responders;
* :data:`RESPONSES` (``event-signal-response``): a :class:`Response`,
  responders to exporters.

A compatible exporter sends exactly the keys the reference responder
accepts, with their types (it drops a wrong key set and crashes on a wrong
type). What arrives here is never trusted: :func:`parse_signal` and
:func:`parse_response` check the size before parsing, want strict JSON, and
refuse missing, extra or mistyped keys with a typed error, which the
callers log and drop.
"""

from __future__ import annotations

import uuid
from typing import Any, Final, final

import attrs

from .._errors import InvalidActionError
from .._json import JSON, check_json
from ..remote.protocol import MAX_MESSAGE_BYTES, dumps_message, loads_object

__all__ = [
    "INITIALIZATION",
    "RESPONSES",
    "SHUTDOWN",
    "SIGNALS",
    "Response",
    "Signal",
    "acl_rules",
    "new_publisher_id",
    "new_responder_id",
    "parse_response",
    "parse_signal",
]

SIGNALS: Final = "event-signal-pubsub"
"""The channel of signals (exporter to responders)."""
RESPONSES: Final = "event-signal-response"
"""The channel of responses (responders to exporters)."""
INITIALIZATION: Final = "initialization"
"""The reserved event an exporter opens with; answered without a RAS code."""
SHUTDOWN: Final = "shutdown"
"""The reserved event an exporter closes with; never answered."""
DEFAULT_TAG: Final = "No tag specified"

_SIGNAL_KEYS: Final = (
    "publisher_id",
    "process_name",
    "event",
    "runner_host",
    "sample_no",
    "tag",
)
_RESPONSE_KEYS: Final = ("responder_id", "publisher_id", "event")
_MAX_TEXT: Final = 4096  # an id, an event name, a host, a tag: never this long


def acl_rules(name: str) -> dict[str, str]:
    """The Redis ACL rules of the state-signals roles, least privilege.

    ``signals-owner`` is added to the owner *name*'s user (``ACL SETUSER``
    adds to a user's rules): it publishes and subscribes on both channels.
    An exporter may publish signals and read responses, a responder the
    reverse; nobody else may publish on either channel. Passwords are
    placeholders (``<password>``).
    """
    base = (
        "on ><password> resetkeys resetchannels -@all "
        "+hello +client|setname +ping +info"
    )
    both = f"&{SIGNALS} &{RESPONSES} +publish +subscribe +unsubscribe"
    # Redis 7 selectors: each (...) is a set of rules of its own, so one
    # channel can be publish-only and the other subscribe-only.
    exporter = f"(+publish &{SIGNALS}) (+subscribe +unsubscribe &{RESPONSES})"
    responder = f"(+subscribe +unsubscribe &{SIGNALS}) (+publish &{RESPONSES})"
    return {
        "signals-owner": f"ACL SETUSER sw-owner-{name} {both}",
        "signals-exporter": f"ACL SETUSER sw-signals-exporter {base} {exporter}",
        "signals-responder": f"ACL SETUSER sw-signals-responder {base} {responder}",
    }


def new_publisher_id(process_name: str) -> str:
    """``<process_name>-<uuid4>``, as the reference exporter makes it."""
    return f"{process_name}-{uuid.uuid4()}"


def new_responder_id(name: str) -> str:
    """``<name>-<uuid4>-resp``, as the reference responder makes it."""
    return f"{name}-{uuid.uuid4()}-resp"


@final
@attrs.frozen
class Signal:
    """One state signal: what a process says it is doing.

    Immutable; safe to share between tasks and threads.
    """

    publisher_id: str
    """The exporter's id (``<process_name>-<uuid4>``)."""
    process_name: str
    """The name of the process the signal describes."""
    event: str
    """Its current state (``initialization`` and ``shutdown`` are reserved)."""
    runner_host: str
    """The host it runs on."""
    sample_no: int = -1
    """The current sample number, -1 when not applicable."""
    tag: str = DEFAULT_TAG
    """A free tag (responders may lock onto one)."""
    metadata: dict[str, JSON] | None = None
    """Any further JSON object; absent from the wire when None."""

    def to_json(self) -> bytes:
        """The wire form: exactly the reference's keys, metadata only when set.

        Raises:
            InvalidActionError: A field has the wrong type, or the message
                is over the size cap.
        """
        for key in ("publisher_id", "process_name", "event", "runner_host", "tag"):
            if type(getattr(self, key)) is not str:
                raise InvalidActionError(key, "must be a str")
        if type(self.sample_no) is not int:
            raise InvalidActionError("sample_no", "must be an int")
        message: dict[str, Any] = {k: getattr(self, k) for k in _SIGNAL_KEYS}
        if self.metadata is not None:
            if type(self.metadata) is not dict:
                raise InvalidActionError("metadata", "must be a JSON object or None")
            message["metadata"] = self.metadata
        return _dumps(message)


@final
@attrs.frozen
class Response:
    """One responder's answer to one signal.

    Immutable; safe to share between tasks and threads.
    """

    responder_id: str
    """The responder's id (``<name>-<uuid4>-resp``)."""
    publisher_id: str
    """The exporter answered."""
    event: str
    """The event answered: with the publisher id, all that ties an answer
    to its signal (the protocol has no correlation id)."""
    ras: int | None = None
    """The RAS code (1 is success); None only for ``initialization``."""
    message: str | None = None
    """Free text, reported to the exporter."""

    def to_json(self) -> bytes:
        """The wire form: ``ras`` and ``message`` only when set.

        Raises:
            InvalidActionError: A field has the wrong type.
        """
        for key in _RESPONSE_KEYS:
            if type(getattr(self, key)) is not str:
                raise InvalidActionError(key, "must be a str")
        message: dict[str, Any] = {k: getattr(self, k) for k in _RESPONSE_KEYS}
        if self.ras is not None:
            if type(self.ras) is not int:
                raise InvalidActionError("ras", "must be an int or None")
            message["ras"] = self.ras
        if self.message is not None:
            if type(self.message) is not str:
                raise InvalidActionError("message", "must be a str or None")
            message["message"] = self.message
        return _dumps(message)


def _dumps(message: dict[str, Any]) -> bytes:
    data = dumps_message(message)
    if len(data) > MAX_MESSAGE_BYTES:
        reason = f"{len(data)} bytes, over the {MAX_MESSAGE_BYTES}-byte message cap"
        raise InvalidActionError("message", reason)
    return data


def parse_signal(data: bytes) -> Signal:
    """Parse an untrusted signal.

    Raises:
        InvalidActionError: It is not one: not strict JSON, not an object,
            over the size cap, missing or extra keys, a wrong type.
    """
    obj = loads_object(data)
    keys = set(obj)
    required = set(_SIGNAL_KEYS)
    if keys != required and keys != required | {"metadata"}:
        missing = sorted(required - keys)
        extra = sorted(keys - required - {"metadata"})
        reason = f"missing {missing}, unexpected {extra}"
        raise InvalidActionError("signal", reason)
    for key in ("publisher_id", "process_name", "event"):
        _text(obj, key)
    for key in ("runner_host", "tag"):
        _text(obj, key, empty=True)
    sample_no = obj["sample_no"]
    if type(sample_no) is not int:
        raise InvalidActionError("sample_no", "must be an int")
    metadata = obj.get("metadata")
    if "metadata" in obj:
        if type(metadata) is not dict:
            raise InvalidActionError("metadata", "must be a JSON object")
        check_json(metadata, "metadata")
    return Signal(
        obj["publisher_id"],
        obj["process_name"],
        obj["event"],
        obj["runner_host"],
        sample_no,
        obj["tag"],
        metadata,
    )


def parse_response(data: bytes) -> Response:
    """Parse an untrusted response.

    Raises:
        InvalidActionError: It is not one (as :func:`parse_signal`).
    """
    obj = loads_object(data)
    keys = set(obj)
    required = set(_RESPONSE_KEYS)
    if not required <= keys or keys - required - {"ras", "message"}:
        missing = sorted(required - keys)
        extra = sorted(keys - required - {"ras", "message"})
        reason = f"missing {missing}, unexpected {extra}"
        raise InvalidActionError("response", reason)
    for key in _RESPONSE_KEYS:
        _text(obj, key)
    ras = obj.get("ras")
    if ras is not None and type(ras) is not int:
        raise InvalidActionError("ras", "must be an int")
    message = obj.get("message")
    if message is not None:
        if type(message) is not str:
            raise InvalidActionError("message", "must be a str")
        message = message[:_MAX_TEXT]
    return Response(
        obj["responder_id"], obj["publisher_id"], obj["event"], ras, message
    )


def _text(obj: dict[str, Any], key: str, *, empty: bool = False) -> None:
    value = obj[key]
    if type(value) is not str:
        raise InvalidActionError(key, f"must be a str (got {type(value).__name__})")
    if len(value) > _MAX_TEXT or not (value or empty):
        shortest = 0 if empty else 1
        raise InvalidActionError(key, f"must be {shortest}..{_MAX_TEXT} characters")
