"""Journal segments read back record by record, and replayed on a tree.

Read-only: recovery, inspection, the feed rebuilt from the files and the
process that rebuilds a snapshot read segments through here; the state's
own :class:`~._journal.Journal` writes them.
"""

from __future__ import annotations

import os
import zlib
from typing import TYPE_CHECKING, Any, Final

import attrs

from ..._errors import CorruptStateError, StatewardError
from ..._json import check_json
from ...paths import MAX_PATH_DEPTH
from ._format import (
    _MAX_RECORD,
    _RECORD_CRC,
    _RECORD_HEAD,
    _RECORD_MAGIC,
    _SCAN,
    _SEGMENT_HEAD,
    _SEGMENT_MAGIC,
    loads_record,
    segment_name,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..._changes import Change
    from ...tree import Tree
    from .._files import Files

__all__ = [
    "FOREIGN",
    "Segment",
    "apply_record",
    "read_segment",
    "replay_records",
    "segments_after",
]


FOREIGN: Final = "journal segment belongs to another store or is misnamed"
"""Why a segment that is not this state's history is refused."""


@attrs.frozen
class Segment:
    """A journal segment read back: its header and its valid records."""

    store_id: bytes
    first: int
    payloads: list[bytes]  # the valid records', of revisions first, first + 1, ...
    valid_size: int  # bytes up to the end of the last valid record
    torn: str | None  # why the tail after valid_size is unusable, if it is

    def of_another(self, first: int, store_id: bytes | None) -> bool:
        """Whether it is not the history of *store_id* (when known), listed at *first*.

        Another store's segment, or one whose header names another first
        revision than its file's name (*first*); an empty one is no one's.
        """
        return self.first != -1 and (
            self.first != first or (store_id is not None and self.store_id != store_id)
        )

    @property
    def records(self) -> list[tuple[int, bytes]]:
        """``(revision, payload)`` of each valid record, in order (a new list)."""
        return list(enumerate(self.payloads, self.first))


def read_segment(data: bytes, name: str) -> Segment:
    """Decode a segment; stop at the first bad record and say why.

    Zeros to the end of *data* are where the records end (a segment is
    written ahead with zeros): ``valid_size`` is where they start, and
    nothing is torn. A bad record with nothing valid after it is a torn
    tail, reported in ``torn`` (the caller decides whether one is
    acceptable there). So is a hole, zeros up to valid records that were
    all written before the damaged revision was synced: a crash kept a
    later unsynced write and lost an earlier one. Anything else followed
    by a valid record is corruption.

    Raises:
        CorruptStateError: The header is damaged, a sequence is out of order,
            or valid records follow damage that no crash can explain.
    """
    head = _SEGMENT_HEAD.size
    if len(data) < head:
        return Segment(b"", -1, [], 0, f"header is torn ({len(data)} bytes)")
    magic, store_id, first, crc = _SEGMENT_HEAD.unpack_from(data)
    if magic != _SEGMENT_MAGIC or zlib.crc32(data[: head - 4]) != crc:
        if len(data) == head:
            # Nothing follows: the header's own write was torn by a crash
            # (records are appended only once the header is synced).
            return Segment(b"", -1, [], 0, "header is torn (damaged, no records)")
        raise CorruptStateError(name, "journal segment header is damaged")
    payloads: list[bytes] = []  # (a tuple each with its revision cost a fifth)
    offset = head
    expected = first
    end = len(data)
    size, unpack, crc32, pack = (
        _RECORD_HEAD.size,
        _RECORD_HEAD.unpack_from,
        zlib.crc32,
        _RECORD_CRC.pack,
    )
    while offset < end:
        # The common case inline, a valid record in sequence (the call cost
        # recovery a sixth of its time); _record_at names anything else.
        if end - offset >= size:
            magic, length, crc, sequence, synced = unpack(data, offset)
            start = offset + size
            payload = data[start : start + length]
            if (
                magic == _RECORD_MAGIC
                and sequence == expected
                and len(payload) == length <= _MAX_RECORD
                and crc32(payload, crc32(pack(length, sequence, synced))) == crc
            ):
                payloads.append(payload)
                expected += 1
                offset = start + length
                continue
        problem, sequence, _synced, payload, after = _record_at(data, offset)
        if problem is None:
            if sequence != expected:
                reason = (
                    f"record at byte {offset} has revision {sequence}, "
                    f"expected {expected}"
                )
                raise CorruptStateError(name, reason)
            payloads.append(payload)
            expected += 1
            offset = after
            continue
        if data.count(0, offset) == end - offset:
            # Zeros to the end: a segment written ahead (Journal), whose
            # records end here. No record, and nothing torn.
            break
        later = _valid_records(data, offset + 1)
        if later:
            at, _ = later[0]
            hole = not data[offset:at].strip(b"\0")
            if not hole or any(synced >= expected for _, synced in later):
                reason = (
                    f"damaged record at byte {offset} ({problem}) is followed by a "
                    f"valid record at byte {at}: corruption, not a torn write"
                )
                raise CorruptStateError(name, reason)
            problem = f"a hole (zeros) up to unsynced records at byte {at}"
        return Segment(store_id, first, payloads, offset, f"{problem} at byte {offset}")
    return Segment(store_id, first, payloads, offset, None)


def segments_after(
    files: Files,
    directory: str,
    firsts: list[int],
    store_id: bytes,
    after: int,
    until: int,
) -> Iterator[tuple[str, Segment]]:
    """The segments that may hold revisions *after* + 1 .. *until*, read, in order.

    *firsts* are the segments' first revisions, as the directory lists them.
    Yields ``(name, segment)``, skipping empty segments; the caller stops
    once it has what it needs. A segment of another store, or one whose
    header names another first revision than its file, is refused: its
    records are not this state's history.

    Raises:
        CorruptStateError: A segment is damaged, misnamed or another store's.
    """
    for i, first in enumerate(firsts):
        following = firsts[i + 1] if i + 1 < len(firsts) else None
        if following is not None and following <= after + 1:
            continue  # wholly at or before *after*
        if first > until:
            return
        name = segment_name(first)
        segment = read_segment(files.read(os.path.join(directory, name)), name)
        if segment.first == -1:
            continue  # (empty)
        if segment.of_another(first, store_id):
            raise CorruptStateError(name, FOREIGN)
        yield name, segment


def _record_at(data: bytes, offset: int) -> tuple[str | None, int, int, bytes, int]:
    size = _RECORD_HEAD.size
    if len(data) - offset < size:
        return "record header is cut short", 0, 0, b"", 0
    magic, length, crc, sequence, synced = _RECORD_HEAD.unpack_from(data, offset)
    if magic != _RECORD_MAGIC:
        return "no record marker", 0, 0, b"", 0
    if length > _MAX_RECORD:
        return f"impossible record length {length}", 0, 0, b"", 0
    start = offset + size
    payload = data[start : start + length]
    if len(payload) < length:
        return "record is cut short", 0, 0, b"", 0
    if (
        zlib.crc32(payload, zlib.crc32(_RECORD_CRC.pack(length, sequence, synced)))
        != crc
    ):
        return "record checksum does not match", 0, 0, b"", 0
    return None, sequence, synced, payload, start + length


def _valid_records(data: bytes, start: int) -> list[tuple[int, int]]:
    """Every valid record at or after *start*: (offset, synced)."""
    found: list[tuple[int, int]] = []
    while (at := data.find(_RECORD_MAGIC, start)) >= 0:
        problem, _, synced, _, after = _record_at(data, at)
        if problem is None:
            found.append((at, synced))
            start = after
        else:
            start = at + 1
    return found


def apply_record(
    tree: Tree,
    sequence: int,
    payload: bytes,
    name: str,
    changes: list[Change] | None = None,
) -> list[Any]:
    """Replay one record's effect on *tree*, set its revision, return its identity.

    With *changes*, the record's changes (pings included) are appended there
    as the live action made them, old values and all. The identity is the
    ``["a", id, source, payload]`` operation.

    Raises:
        CorruptStateError: The payload is not a record this code can replay.
    """
    decoded = loads_record(payload, name, sequence)
    identity: list[Any] = ["a", "", None, None]
    ops: list[tuple[str, tuple[str, ...], Any]] = []
    try:
        # Everything is checked before anything is applied, and the tree
        # applies the whole record or nothing.
        if type(decoded) is not list:
            raise _BadRecord("not a list of operations")
        for op in decoded:
            if type(op) is not list or not op:
                msg = f"operation {op!r:.60} is not a non-empty list"
                raise _BadRecord(msg)
            kind = op[0]
            if kind == "a":
                _check_identity(op)
                identity = op
                continue
            if kind not in ("s", "d", "p") or len(op) != (3 if kind == "s" else 2):
                msg = f"unknown operation {op!r:.60}"
                raise _BadRecord(msg)
            value = None
            if kind == "s":
                value = op[2]
                check_json(value, "value")
            ops.append((kind, _record_path(op[1]), value))
        tree.replay(ops, changes)
    except (_BadRecord, StatewardError) as exc:
        reason = f"record of revision {sequence} cannot be replayed: {exc}"
        raise CorruptStateError(name, reason) from None
    tree.revision = sequence
    return identity


def replay_records(tree: Tree, first: int, payloads: list[bytes], name: str) -> int:
    """Replay records *first*, *first* + 1, ... of segment *name* on *tree*.

    As recovery does: records at or before the tree's revision are skipped,
    and no changes are kept. Returns how many payload bytes were replayed.
    The common record, one ``Set``, is checked and written in this loop,
    without :func:`apply_record`'s calls, lists and tuples (a fifth of
    recovery's time); anything else goes through it.

    Raises:
        CorruptStateError: A revision is missing before *first*, or a record
            cannot be replayed (the tree then holds the records before it).
    """
    revision = tree.revision
    skip = revision + 1 - first
    if skip < 0 and payloads:
        reason = f"revision {revision + 1} is missing (next found: {first})"
        raise CorruptStateError(name, reason)
    scan, check, restore = _SCAN, check_json, tree.restore
    depth = MAX_PATH_DEPTH + 1
    size = 0
    for payload in payloads[skip:] if skip > 0 else payloads:
        revision += 1
        # Exactly [["a", id, source or None, payload], ["s", path, value]], with
        # an ASCII path through dicts; anything else takes the general way,
        # which decides (and names any error).
        done = False
        try:
            text = payload.decode()
            decoded, end = scan(text, 0)
            if end == len(text) and type(decoded) is list and len(decoded) == 2:
                identity, op = decoded
                if (
                    type(identity) is list
                    and len(identity) == 4
                    and identity[0] == "a"
                    and type(identity[1]) is str
                    and identity[1].isascii()  # (else checked the general way)
                    and (identity[2] is None or type(identity[2]) is str)
                    and type(op) is list
                    and len(op) == 3
                    and op[0] == "s"
                    and type(path := op[1]) is list
                    and len(path) <= depth
                    and "".join(path).isascii()  # (a TypeError if not all str)
                    and (identity[2] is None or identity[2].isascii())
                ):
                    if identity[3] is not None:
                        check(identity[3], "payload")
                    check(op[2], "value")
                    done = restore(path, op[2])
        except (ValueError, RecursionError, StopIteration, TypeError, StatewardError):
            pass
        if done:
            tree.revision = revision
        else:
            apply_record(tree, revision, payload, name)
        size += len(payload)
    return size


class _BadRecord(Exception):
    """A record that decodes but is not one this code writes."""


def _record_path(raw: object) -> tuple[str, ...]:
    # What the tree can hold: any str keys (a Merge may write "", "*" or a
    # dotted key), one deeper than a path, each valid UTF-8.
    if type(raw) is not list or len(raw) > MAX_PATH_DEPTH + 1:
        msg = f"path {raw!r:.60} is not a list of <= 65 segments"
        raise _BadRecord(msg)
    for seg in raw:
        if type(seg) is not str:
            msg = f"path segment {seg!r:.60} is not a str"
            raise _BadRecord(msg)
        if not seg.isascii():
            check_json(seg, "path")  # no lone surrogate
    return tuple(raw)


def _check_identity(op: list[Any]) -> None:
    if (
        len(op) != 4
        or type(op[1]) is not str
        or not (op[2] is None or type(op[2]) is str)
    ):
        msg = f"action identity {op!r:.60} is malformed"
        raise _BadRecord(msg)
    check_json(op[1], "id")  # (text: no lone surrogate, as the Action checks)
    if op[2] is not None:
        check_json(op[2], "source")
    if op[3] is not None:
        check_json(op[3], "payload")
