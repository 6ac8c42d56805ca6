"""``stateward inspect``: what a state directory holds, for a person or a script."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ._cli_progress import progress_printer
from ._errors import StatewardError
from .actors._log import Redactor
from .actors.persistence import inspect_directory
from .paths import format_path, parse_path

__all__ = ["inspect_command"]


_MISSING = object()


def _lookup(value: Any, segments: tuple[str, ...]) -> Any:
    for seg in segments:
        if isinstance(value, dict) and seg in value:
            value = value[seg]
        elif isinstance(value, list) and seg.isdigit() and int(seg) < len(value):
            value = value[int(seg)]
        else:
            return _MISSING
    return value


def _plural(n: int, noun: str) -> str:
    if n == 1:
        return f"1 {noun}"
    plural = {"leaf": "leaves", "child": "children"}.get(noun, noun + "s")
    return f"{n:,} {plural}"


def _leaves(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_leaves(v) for v in value.values())
    if isinstance(value, list):
        return sum(_leaves(v) for v in value)
    return 1


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "bool"}.get(
        type(value), "null" if value is None else "number"
    )


def _summary(path: tuple[str, ...], value: Any, depth: int = 2) -> list[str]:
    """One line per node down to *depth*: name, type, leaves, JSON bytes."""
    lines: list[str] = []

    def walk(name: str, node: Any, level: int) -> None:
        size = len(json.dumps(node, ensure_ascii=False).encode())
        line = f"{'  ' * level}{name}  {_kind(node)}"
        if isinstance(node, (dict, list)):
            line += f", {_plural(len(node), 'child')}, {_plural(_leaves(node), 'leaf')}"
        lines.append(f"{line}, {_plural(size, 'byte')}")
        if level < depth and isinstance(node, dict):
            for key, child in node.items():
                walk(key, child, level + 1)
        elif level < depth and isinstance(node, list):
            for i, child in enumerate(node):
                walk(f"[{i}]", child, level + 1)

    walk(format_path(path) or "(root)", value, 0)
    return lines


def inspect_command(
    directory: str,
    revision: int | None,
    redact: list[str] | None = None,
    *,
    path: str = "",
    summary: bool = False,
    as_json: bool = False,
) -> int:
    """Print what a state directory holds; 1 with a message when it cannot.

    *path* shows one subtree; *summary* a tree of sizes instead of values;
    *as_json* one JSON object for scripts. Values under a *redact* pattern
    are printed as ``"<redacted>"``.
    """
    try:
        redactor = Redactor(redact or [])
        segments = parse_path(path)
        if not os.path.isdir(directory):
            what = "a file" if os.path.exists(directory) else "no such directory"
            print(f"stateward inspect: {directory}: {what}, not a state directory",
                  file=sys.stderr)  # fmt: skip
            return 1
        names = os.listdir(directory)
        if not any(n.startswith(("snapshot-", "journal-")) for n in names):
            print(
                f"stateward inspect: {directory} is not a state directory "
                "(no snapshot and no journal in it)",
                file=sys.stderr,
            )
            return 1
        progress = progress_printer(f"replaying {directory}")
        found = inspect_directory(directory, revision, on_progress=progress)
    except (StatewardError, OSError) as exc:
        print(f"stateward inspect: {exc}", file=sys.stderr)
        return 1
    tree = redactor.mask((), found.tree)
    value = _lookup(tree, segments)
    if value is _MISSING:
        shown = format_path(segments)
        print(
            f"stateward inspect: {shown!r} does not exist at revision {found.revision}",
            file=sys.stderr,
        )
        return 1
    if as_json:
        report = {
            "directory": directory,
            "snapshots": [
                {"file": n, "revision": r, "bytes": b, "status": s}
                for n, r, b, s in found.snapshots
            ],
            "segments": [
                {"file": n, "first": f, "records": c, "status": s}
                for n, f, c, s in found.segments
            ],
            "oldest": found.oldest,
            "newest": found.newest,
            "revision": found.revision,
            "path": format_path(segments),
            "value": value,
        }
        print(json.dumps(report, ensure_ascii=False))
        return 0
    print(f"state directory {directory}")
    print("snapshots:")
    for name, rev, size, status in found.snapshots:
        print(f"  {name}  revision {rev}  {size:,} bytes  {status}")
    print("journal segments:")
    for name, first, count, status in found.segments:
        last = f"..{first + count - 1}" if count else " (empty)"
        records = _plural(count, "record")
        print(f"  {name}  revisions {first}{last}  {records}  {status}")
    print(f"revisions on disk: {found.oldest}..{found.newest}")
    what = repr(format_path(segments)) if segments else "tree"
    if summary:
        print(f"{what} at revision {found.revision} (types, sizes):")
        for line in _summary(segments, value):
            print(f"  {line}")
        return 0
    print(f"{what} at revision {found.revision}:")
    print(json.dumps(value, indent=2, ensure_ascii=False))
    return 0
