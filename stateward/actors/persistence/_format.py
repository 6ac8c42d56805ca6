"""The bytes on disk: record, segment and snapshot framing, names, JSON."""

from __future__ import annotations

import json
import logging
import re
import struct
import zlib
from typing import TYPE_CHECKING, Any, Final

from ..._errors import CorruptStateError
from ...messages.events import ChangeKind

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..._changes import Change

__all__ = [
    "LOCK_NAME",
    "QUARANTINE",
    "dumps_bytes",
    "encode_changes",
    "encode_record",
    "loads_record",
    "loads_strict",
    "segment_name",
    "snapshot_name",
]

_RECORD_MAGIC: Final = b"SWR2"
_RECORD_HEAD: Final = struct.Struct("<4sIIQQ")  # magic, length, crc, seq, synced
_RECORD_CRC: Final = struct.Struct("<IQQ")  # what the crc covers before the payload
_SEGMENT_MAGIC: Final = b"SWJRNL01"
_SEGMENT_HEAD: Final = struct.Struct("<8s16sQI")  # magic, store id, first seq, crc
_SNAPSHOT_MAGIC: Final = b"SWSNAP01"
_SNAPSHOT_HEAD: Final = struct.Struct("<8s16sQQII")  # +revision, length, crcs
_MAX_RECORD: Final = 1 << 30

_SNAPSHOT_RE: Final = re.compile(r"snapshot-(\d{20})\.snap")
_SEGMENT_RE: Final = re.compile(r"journal-(\d{20})\.wal")
_TEMP_SUFFIX: Final = ".tmp"
QUARANTINE: Final = "quarantine"
LOCK_NAME: Final = "LOCK"
logger = logging.getLogger(__name__)


def _compact_encoder() -> Callable[[Any], str]:
    """Compact strict JSON for the files, as fast as the stdlib's encoder goes.

    ``JSONEncoder.encode`` builds a C encoder on every call and by default
    keeps a dict of the containers it is inside, to catch cycles. What is
    written here is validated JSON, which has none (nesting is bounded), so
    one C encoder without that check is made once and called directly:
    about half the cost of a journal record's encoding. Where the C encoder
    is missing or differs (another Python), the plain encoder without the
    cycle check, which writes the same bytes.
    """
    plain = json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
    )
    make = getattr(json.encoder, "c_make_encoder", None)
    sample = [["a", "i\u00e9\n", None, {"k": [1.5, -2, True, False]}], ["s", [], ""]]
    try:
        encode = make(  # type: ignore[misc]  # None is caught below
            None, plain.default, json.encoder.encode_basestring,
            None, ":", ",", False, False, False,
        )  # fmt: skip

        def dumps(value: Any) -> str:
            return "".join(encode(value, 0))

        if dumps(sample) == plain.encode(sample):
            return dumps
    except TypeError:
        pass
    return plain.encode


_dumps: Final = _compact_encoder()


def _bytes_encoder() -> Callable[[Any], bytes]:
    """Compact strict JSON as UTF-8 bytes, what the journal and snapshots hold.

    With orjson installed (``pip install 'stateward[fast]'``), orjson's
    encoder: about 11x the stdlib's on a large tree (a million leaves in
    0.06 s instead of 0.63 s), so a forked child's snapshot ends sooner
    and a large value's journal record costs the state actor little. It
    writes the same JSON but for the spelling of some floats (``1e-7`` for
    ``1e-07``), which read back as the same values. Whatever it refuses
    (nothing checked JSON holds: its ints fit 64 bits, its nesting is far
    under orjson's limit) goes to the stdlib encoder, as does everything
    when orjson is missing.
    """

    def plain(value: Any) -> bytes:
        return _dumps(value).encode()

    try:
        import orjson
    except ImportError:  # pragma: no cover - the test extra installs it
        return plain
    fast = orjson.dumps

    def dumps_bytes(value: Any) -> bytes:
        try:
            return fast(value)
        except TypeError:  # (orjson.JSONEncodeError is one)
            return plain(value)

    return dumps_bytes


dumps_bytes: Final = _bytes_encoder()


# -- records -----------------------------------------------------------------


def _refuse_constant(name: str) -> None:
    msg = f"{name} is not JSON"
    raise ValueError(msg)


_STRICT_DECODE: Final = json.JSONDecoder(parse_constant=_refuse_constant).decode
"""One decoder for every record: ``json.loads`` with an option builds a new
one per call, which cost recovery about a third of its time."""


_SCAN: Final[Callable[[str, int], tuple[Any, int]]] = json.JSONDecoder(
    parse_constant=_refuse_constant
).scan_once  # type: ignore[attr-defined]  # set in __init__, not in typeshed
"""The strict decoder's scanner itself: one call per record, no wrapper."""


def loads_record(data: bytes, name: str, sequence: int) -> Any:
    """Decode the payload of the record of revision *sequence*, fast.

    A record is one compact JSON value, as the journal writes it: the
    scanner decodes it without ``decode``'s two Python frames (a fifth of
    recovery's time). Anything else (whitespace around it, or any error)
    goes to :func:`loads_strict`, which decides and names the error.
    """
    try:
        text = data.decode()
        value, end = _SCAN(text, 0)
        if end == len(text):
            return value
    except (ValueError, RecursionError, StopIteration):
        pass
    return loads_strict(data, name, f"record of revision {sequence}")


def loads_strict(data: bytes | str, name: str, what: str) -> Any:
    """Decode JSON read from a file; anything but strict JSON is corruption.

    NaN and Infinity, nesting the decoder cannot follow (a RecursionError)
    and invalid UTF-8 all become :class:`CorruptStateError`.
    """
    try:
        text = data if isinstance(data, str) else data.decode()
        return _STRICT_DECODE(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError included
        raise not_strict_json(name, what, exc) from None


def not_strict_json(name: str, what: str, exc: Exception) -> CorruptStateError:
    """The error for *what* in file *name*, which the strict decoder refused."""
    reason = f"{what} is not strict JSON: {type(exc).__name__}: {exc}"
    return CorruptStateError(name, reason[:300])


def encode_changes(
    changes: list[Change], action: Any, whole: tuple[Any, bytes] | None = None
) -> bytes:
    """Encode the effect of one action.

    ``[["a", id, source, payload], then per change ["s", path, value] |
    ["d", path] | ["p", path]]``: the action's identity (for the events a
    feed rebuilds from the journal), its writes, deletions and pings.

    *whole* is a value and its encoding made in advance (a checkpoint's
    tree, encoded by a worker thread): when the action's one change writes
    that very object at the root, the record takes those bytes as they are.
    """
    ops: list[list[Any]] = [["a", action.id, action.source, action.payload]]
    if whole is not None and len(changes) == 1:
        change = changes[0]
        if change.new is whole[0] and not change.path:
            ops.append(["s", []])  # '...,["s",[]]]' becomes '...,["s",[],<value>]]'
            return b"".join((dumps_bytes(ops)[:-2], b",", whole[1], b"]]"))
    for change in changes:
        kind = change.kind
        if kind is ChangeKind.DELETED:
            ops.append(["d", change.path])
        elif kind is ChangeKind.PINGED:
            ops.append(["p", change.path])
        else:
            ops.append(["s", change.path, change.new])
    return dumps_bytes(ops)


def encode_record(sequence: int, payload: bytes, synced: int) -> bytes:
    """Frame *payload* as the journal record of revision *sequence*.

    *synced* must be a revision whose record was fsynced before this one is
    written (older is fine, newer is a lie that recovery would trust).
    """
    length = len(payload)
    crc = zlib.crc32(payload, zlib.crc32(_RECORD_CRC.pack(length, sequence, synced)))
    head = _RECORD_HEAD.pack(_RECORD_MAGIC, length, crc, sequence, synced)
    return head + payload


def _segment_header(store_id: bytes, first: int) -> bytes:
    body = _SEGMENT_MAGIC + store_id + struct.pack("<Q", first)
    return body + struct.pack("<I", zlib.crc32(body))


def _snapshot_header(store_id: bytes, revision: int, body: bytes) -> bytes:
    head = (
        _SNAPSHOT_MAGIC
        + store_id
        + struct.pack("<QQI", revision, len(body), zlib.crc32(body))
    )
    return head + struct.pack("<I", zlib.crc32(head))


def snapshot_name(revision: int) -> str:
    """Return the file name of the snapshot of *revision*."""
    return f"snapshot-{revision:020d}.snap"


def segment_name(first: int) -> str:
    """Return the file name of the journal segment starting at *first*."""
    return f"journal-{first:020d}.wal"
