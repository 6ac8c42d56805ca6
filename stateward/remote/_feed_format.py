"""The feed's entries: one per released revision, in ``sw:{<name>}:feed``.

Entry ids are ``<revision>-0``; the field ``m`` holds one JSON object::

    {"r": R, "a": ACTION_ID, "s": SOURCE|null, "p": PAYLOAD,
     "c": [[PATH_SEGMENTS, KIND, OLD, NEW], ...]}
    {"r": LAST, "gap": [FIRST, LAST], "why": REASON}

A gap stands for revisions the owner cannot publish (too large, or older
than it keeps): readers get a ``Resync`` for them, never a silent hole.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from .._errors import InvalidActionError
from ..messages.events import ChangeKind
from .protocol import (
    FIELD,
    MAX_MESSAGE_BYTES,
    change_kind,
    check_keys,
    count,
    decode_fields,
    typed,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["FEED_MAX_BYTES", "FeedChange", "decode_feed", "encode_feed", "encode_gap"]


FEED_MAX_BYTES: Final = 8 * MAX_MESSAGE_BYTES
"""The largest feed entry: a change with its old value may exceed an action's cap."""


def encode_feed(
    revision: int,
    action_id: str,
    source: str | None,
    payload: object,
    changes: Sequence[tuple[Sequence[str], str, object, object]],
) -> dict[bytes, bytes]:
    """Encode one revision for the feed: ``(path, kind, old, new)`` per change.

    Old values are left out when the entry would pass :data:`FEED_MAX_BYTES`
    with them; a revision too large even then is encoded as a gap (readers
    get a Resync for it, never a silent hole).
    """
    for with_old in (True, False):
        message = {
            "r": revision,
            "a": action_id,
            "s": source,
            "p": payload,
            "c": [
                [list(path), kind, old if with_old else None, new]
                for path, kind, old, new in changes
            ],
        }
        data = json.dumps(message, ensure_ascii=False, allow_nan=False).encode()
        if len(data) <= FEED_MAX_BYTES:
            return {FIELD: data}
    return encode_gap(revision, revision, "too large for the feed")


def encode_gap(first: int, last: int, reason: str) -> dict[bytes, bytes]:
    """A feed entry (id ``<last>-0``) for revisions the owner cannot publish."""
    data = json.dumps({"r": last, "gap": [first, last], "why": reason}).encode()
    return {FIELD: data}


FeedChange = tuple[tuple[str, ...], ChangeKind, Any, Any]
"""(path segments, kind, old value, new value)."""


def decode_feed(
    fields: object,
) -> tuple[int, int, str | None, str | None, Any, list[FeedChange]]:
    """Decode a feed entry: ``(first, revision, action_id, source, payload, changes)``.

    A gap has no action id (``first`` < ``revision`` or no changes). The
    changes' paths are kept as segments, as the tree has them: a reader
    routes them as they are.

    Raises:
        StatewardError: It is not a feed entry: every field is checked, so
            that what a reader gets is what a feed entry holds (a revision
            is an int >= 0, a gap's first is at most its last, a change's
            kind is a :class:`~stateward.ChangeKind`).
    """
    message = decode_fields(fields, FEED_MAX_BYTES)
    revision = count(message.get("r"), "r")
    if "gap" in message:
        gap = message["gap"]
        if not (isinstance(gap, list) and len(gap) == 2):
            raise InvalidActionError("gap", "must be [first, last]")
        first = count(gap[0], "gap")
        if first > revision or gap[1] != revision:
            raise InvalidActionError("gap", f"{gap!r:.60} does not end at r={revision}")
        return first, revision, None, None, None, []
    check_keys(message, {"r", "a", "s", "p", "c"}, set(), "feed entry")
    action_id = typed(message["a"], (str,), "a")
    source = message["s"]
    if source is not None:
        source = typed(source, (str,), "s")
    raw = typed(message["c"], (list,), "c")
    changes: list[FeedChange] = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 4):
            raise InvalidActionError("c", "each change must be [path, kind, old, new]")
        path, kind, old, new = item
        segments = typed(path, (list,), "path")
        if not all(type(seg) is str for seg in segments):
            raise InvalidActionError("path", "must be a list of str")
        changes.append((tuple(segments), change_kind(kind, "kind"), old, new))
    return revision, revision, action_id, source, message["p"], changes
