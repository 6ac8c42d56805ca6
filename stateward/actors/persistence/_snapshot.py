"""Snapshot files: read back whole, checked, decoded."""

from __future__ import annotations

import json
import zlib
from typing import Any

import attrs

from ..._errors import (
    CorruptStateError,
)
from ._format import _SNAPSHOT_HEAD, _SNAPSHOT_MAGIC

__all__ = ["Snapshot", "parse_snapshot"]


@attrs.frozen
class Snapshot:
    """A snapshot file read back whole."""

    store_id: bytes
    revision: int
    root: Any


def parse_snapshot(data: bytes, name: str) -> Snapshot:
    """Check and decode a snapshot file.

    Raises:
        CorruptStateError: Any check fails (magic, checksums, length, JSON).
    """
    size = _SNAPSHOT_HEAD.size
    if len(data) < size:
        raise CorruptStateError(
            name, f"snapshot is {len(data)} bytes, shorter than its header"
        )
    magic, store_id, revision, length, body_crc, head_crc = _SNAPSHOT_HEAD.unpack_from(
        data
    )
    if magic != _SNAPSHOT_MAGIC or zlib.crc32(data[: size - 4]) != head_crc:
        raise CorruptStateError(name, "snapshot header is damaged")
    body = data[size:]
    if len(body) != length or zlib.crc32(body) != body_crc:
        raise CorruptStateError(name, "snapshot body does not match its checksum")
    try:
        root = json.loads(body)
    except ValueError as exc:  # a checksum collision, or a writer bug
        raise CorruptStateError(name, f"snapshot body is not JSON: {exc}") from None
    return Snapshot(store_id, revision, root)
