"""Snapshot files: read back whole, checked, decoded."""

from __future__ import annotations

import contextlib
import os
import zlib
from typing import TYPE_CHECKING, Any, Final

import attrs

from ..._errors import CorruptStateError, InvalidValueError
from ..._json import MAX_VALUE_DEPTH, check_json
from ...paths import MAX_PATH_DEPTH
from ._format import _SNAPSHOT_HEAD, _SNAPSHOT_MAGIC, loads_strict

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._files import Files

__all__ = ["Snapshot", "parse_snapshot", "read_snapshot"]


@attrs.frozen
class Snapshot:
    """A snapshot file read back whole."""

    store_id: bytes
    revision: int
    root: Any
    size: int  # of the encoded body


_CHUNK: Final = 1 << 20
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


def _decode(
    body: bytes,
    store_id: bytes,
    revision: int,
    name: str,
    loads: Callable[[bytes], Any] | None = None,
) -> Snapshot:
    root = None
    if loads is not None:
        with contextlib.suppress(ValueError):  # decided by the strict decoder
            root = loads(body)
    if root is None:
        root = loads_strict(body, name, "snapshot body")  # a collision, a writer bug
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
    loads: Callable[[bytes], Any] | None = None,
) -> Snapshot:
    """Read, check and decode the snapshot file at *path*, in bounded memory.

    The header and the file's size are checked first, then the checksum in
    chunks: a damaged file (a huge sparse one included) is refused without
    being held in memory; only a file whose checksum holds is read whole.
    *loads* is a faster decoder to try first (one that refuses what is not
    strict JSON); what it refuses is decided by the strict one.

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
    return _decode(body, store_id, revision, name, loads)
