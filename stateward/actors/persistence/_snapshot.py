"""Snapshot files: read back whole, checked, decoded.

A snapshot's body is decoded by orjson where it is installed (twice as fast
as the strict decoder on a large tree: 0.65 against 1.3 s at a million
leaves), and by the strict decoder wherever the two could differ: whatever
orjson refuses (NaN, Infinity, invalid UTF-8, lone surrogates, deep nesting)
and any body holding a run of 19 digits or more, since orjson reads an
integer beyond 64 bits as a float where the strict decoder keeps it an
integer, which the checks then refuse. Either way the decoded tree is
checked as a message's value is.

Beside a live state (in a worker thread of its process: the feed and time
travel reading the files), a snapshot is decoded by the strict decoder in
short calls instead (``sliced``): one call holds the GIL, and so stops the
state's event loop, for as long as it takes (0.7 s with orjson, 1.3 s
without, at a million leaves).
"""

from __future__ import annotations

import functools
import os
import zlib
from typing import TYPE_CHECKING, Any, Final

import attrs

from ..._errors import CorruptStateError, InvalidValueError
from ..._json import MAX_VALUE_DEPTH, check_json
from ...paths import MAX_PATH_DEPTH
from ._format import _SNAPSHOT_HEAD, _SNAPSHOT_MAGIC, loads_strict, not_strict_json
from ._sliced_json import decode_in_slices

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._files import Files

__all__ = ["Snapshot", "fast_loads", "parse_snapshot", "read_snapshot"]


@attrs.frozen
class Snapshot:
    """A snapshot file read back whole."""

    store_id: bytes
    revision: int
    root: Any
    size: int  # of the encoded body


_CHUNK: Final = 1 << 20
# Every digit made b"0", every other byte a space: a run of _LONG zeros is
# a run of that many digits. An integer beyond the 64-bit range has 19
# digits (below -2**63) or more; a body with any such run, in a number or
# a string, is left to the strict decoder.
_DIGITS: Final = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_LONG: Final = 19
TREE_DEPTH: Final = MAX_PATH_DEPTH + 1 + MAX_VALUE_DEPTH
"""The deepest a tree can nest: a Merge key below the deepest path, holding
the deepest value."""


def _header(head: bytes, name: str) -> tuple[bytes, int, int, int]:
    """Check a snapshot's header: (store id, revision, body length, body crc)."""
    size = _SNAPSHOT_HEAD.size
    if len(head) < size:
        raise CorruptStateError(
            name, f"snapshot is {len(head)} bytes, shorter than its header"
        )
    magic, store_id, revision, length, body_crc, head_crc = _SNAPSHOT_HEAD.unpack_from(
        head
    )
    if magic != _SNAPSHOT_MAGIC or zlib.crc32(head[: size - 4]) != head_crc:
        raise CorruptStateError(name, "snapshot header is damaged")
    return store_id, revision, length, body_crc


@functools.cache
def fast_loads() -> Callable[[bytes], Any] | None:
    """The decoder of orjson, where installed (see the module's docstring)."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - the test extra installs it
        return None
    return orjson.loads


def loads_sliced(body: bytes) -> Any:
    """The strict decoder in short calls (:func:`decode_in_slices`), on UTF-8.

    Decoded from UTF-8 first, as the strict decoder does: given bytes,
    ``json.loads`` would also take UTF-16 and UTF-32, a byte order mark and
    surrogates written in UTF-8, which a snapshot never holds.
    """
    return decode_in_slices(body.decode())


def _long_numbers(body: bytes) -> bool:
    """Whether *body* holds a run of :data:`_LONG` digits or more (anywhere)."""
    run = b"0" * _LONG
    step = _CHUNK
    for start in range(0, len(body), step):
        piece = body[max(0, start - _LONG + 1) : start + step]
        if run in piece.translate(_DIGITS):
            return True
    return False


def _decode(
    body: bytes,
    store_id: bytes,
    revision: int,
    name: str,
    loads: Callable[[bytes], Any] | None = None,
    *,
    exact: bool = False,
) -> Snapshot:
    """*loads* is tried first (*exact*: it decodes as the strict decoder).

    What a decoder that is not *exact* refuses is decided, and named, by
    the strict decoder; an *exact* one's refusal is named at once (not
    decoded twice, the second time in one long call).
    """
    if loads is not None and (exact or not _long_numbers(body)):
        try:
            root = loads(body)
        except (ValueError, RecursionError) as exc:
            if exact:
                raise not_strict_json(name, "snapshot body", exc) from None
            root = loads_strict(body, name, "snapshot body")  # a writer bug
    else:
        root = loads_strict(body, name, "snapshot body")
    try:
        check_json(root, "snapshot", TREE_DEPTH)
    except InvalidValueError as exc:
        raise CorruptStateError(name, f"snapshot holds {exc}") from None
    return Snapshot(store_id, revision, root, len(body))


def parse_snapshot(data: bytes, name: str) -> Snapshot:
    """Check and decode a snapshot file held in memory.

    Everything decoded passes the checks a message's value does (strict JSON,
    depth): a file with a valid checksum is still not trusted.

    Raises:
        CorruptStateError: Any check fails (magic, checksums, length, JSON).
    """
    store_id, revision, length, body_crc = _header(data, name)
    body = data[_SNAPSHOT_HEAD.size :]
    if len(body) != length or zlib.crc32(body) != body_crc:
        raise CorruptStateError(name, "snapshot body does not match its checksum")
    return _decode(body, store_id, revision, name)


def read_snapshot(
    files: Files,
    path: str,
    name: str,
    *,
    sliced: bool = False,
) -> Snapshot:
    """Read, check and decode the snapshot file at *path*, in bounded memory.

    The header and the file's size are checked first, then the checksum in
    chunks: a damaged file (a huge sparse one included) is refused without
    being held in memory; only a file whose checksum holds is read whole.
    Decoded by orjson where installed, and where it could differ by the
    strict decoder (see the module); with *sliced*, by the strict one in
    short calls (beside a live state).

    Raises:
        CorruptStateError: Any check fails, or *path* is not a regular file.
    """
    with files.open_read(path) as f:
        store_id, revision, length, body_crc = _header(
            f.read(_SNAPSHOT_HEAD.size), name
        )
        if os.fstat(f.fileno()).st_size - _SNAPSHOT_HEAD.size != length:
            raise CorruptStateError(name, "snapshot body does not match its checksum")
        crc = 0
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
        if crc != body_crc:
            raise CorruptStateError(name, "snapshot body does not match its checksum")
        f.seek(_SNAPSHOT_HEAD.size)
        body = f.read()
    if len(body) != length:  # changed under us
        raise CorruptStateError(name, "snapshot body does not match its checksum")
    if sliced:
        return _decode(body, store_id, revision, name, loads_sliced, exact=True)
    return _decode(body, store_id, revision, name, fast_loads())
