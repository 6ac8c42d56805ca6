"""Paths, subscription patterns and the trie that routes events (pure, no I/O).

A **path** addresses one node of the state tree. It can be written three ways:

* dot form: ``"job.bins"``, ``"items.0.name"``;
* slash form, selected by a leading ``/``: ``"/users/1/name"``; keys may then
  contain dots (``"/hosts/10.0.0.1/up"``);
* a tuple of segments: ``("users", 1, "name")`` (ints become digit segments).

The root is ``""``, ``"/"`` or ``()``. Digit segments index lists; everywhere
else a segment is a dict key. Every parsed path is cached, so a hot path parses
each distinct path once.

Rules (each broken rule raises :class:`InvalidPathError`): no empty segment, no
NUL, no ``/`` inside a segment, no ``.``/``..`` segment in slash form, no lone
surrogate, at most :data:`MAX_PATH_DEPTH` segments of at most
:data:`MAX_SEGMENT_LENGTH` characters, and ``*``/``**`` only in patterns.

A **pattern** uses the same syntax plus two wildcards, each a whole segment:
``*`` matches exactly one segment and ``**`` any number of segments, zero
included. A pattern receives the changes at the paths it matches, the changes
*below* them (bubbling: ``"job"`` hears about ``"job.bins"``), and the writes
*above* them that replaced the node it watches (``Set("", {...})`` reaches a
``"job.bins"`` subscriber).
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Final, Generic, TypeAlias, TypeVar

from ._errors import InvalidPathError, short_repr

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

__all__ = [
    "MAX_PATH_DEPTH",
    "MAX_PATH_LENGTH",
    "MAX_SEGMENT_LENGTH",
    "PathLike",
    "PatternTrie",
    "Segments",
    "check_keys_below",
    "format_path",
    "is_index",
    "parse_path",
    "parse_pattern",
]

Segments: TypeAlias = tuple[str, ...]
"""A parsed path: its segments, root = ``()``."""

PathLike: TypeAlias = "str | tuple[str | int, ...]"
"""What every public call accepts as a path."""

MAX_PATH_DEPTH: Final = 64
"""Most segments a path or pattern may have."""
MAX_SEGMENT_LENGTH: Final = 1024
"""Longest segment, in characters."""
MAX_PATH_LENGTH: Final = 8192
"""Longest path string, checked before anything else is done with it."""

_WILDCARDS: Final = frozenset({"*", "**"})
_INDEX_RE: Final = re.compile(r"0|[1-9][0-9]{0,17}")
_T = TypeVar("_T")


def is_index(segment: str) -> bool:
    """Tell whether *segment* is a canonical list index (``"12"``, not ``"012"``)."""
    return _INDEX_RE.fullmatch(segment) is not None


def parse_path(path: PathLike) -> Segments:
    """Parse *path* into its segments (cached).

    Args:
        path: A dot path, a slash path or a tuple of segments.

    Returns:
        The segments; ``()`` for the root.

    Raises:
        InvalidPathError: The path breaks one of the rules in the module docs,
            or contains a wildcard.
    """
    if type(path) is str or type(path) is tuple:
        try:
            return _parse_cached(path, False)
        except TypeError:  # an unhashable segment: the typed error, uncached
            pass
    return _parse(path, wildcards=False)


def parse_pattern(pattern: PathLike) -> Segments:
    """Parse a subscription *pattern*: a path whose segments may be ``*`` or ``**``.

    Raises:
        InvalidPathError: As :func:`parse_path`.
    """
    if type(pattern) is str or type(pattern) is tuple:
        try:
            return _parse_cached(pattern, True)
        except TypeError:  # an unhashable segment: the typed error, uncached
            pass
    return _parse(pattern, wildcards=True)


@functools.lru_cache(maxsize=65536)
def format_path(segments: Segments) -> str:
    """Give the canonical string of *segments*.

    Dot form unless a segment contains a dot, then slash form; the root is ``""``.
    ``parse_path(format_path(s)) == s`` for every valid *s*.
    """
    if not segments:
        return ""
    if any("." in s for s in segments):
        return "/" + "/".join(segments)
    return ".".join(segments)


@functools.lru_cache(maxsize=65536)
def _parse_cached(path: str | tuple[str | int, ...], wildcards: bool) -> Segments:
    return _parse(path, wildcards=wildcards)


def _parse(path: object, *, wildcards: bool) -> Segments:
    if isinstance(path, str):
        if len(path) > MAX_PATH_LENGTH:
            raise InvalidPathError(path, f"longer than {MAX_PATH_LENGTH} characters")
        if path in ("", "/"):
            return ()
        slash = path[0] == "/"
        raw = path[1:].split("/") if slash else path.split(".")
    elif isinstance(path, tuple | list):
        if len(path) > MAX_PATH_DEPTH:
            raise InvalidPathError(path, f"more than {MAX_PATH_DEPTH} segments")
        slash = True  # a tuple segment may hold dots, as in slash form
        raw = [_tuple_segment(path, s) for s in path]
    else:
        reason = f"expected a str or a tuple of segments, got {type(path).__name__}"
        raise InvalidPathError(path, reason)
    if len(raw) > MAX_PATH_DEPTH:
        raise InvalidPathError(path, f"more than {MAX_PATH_DEPTH} segments")
    for seg in raw:
        _check_segment(path, seg, slash=slash, wildcards=wildcards)
    if wildcards:
        # "**.**" matches what "**" matches; keep one so the trie stays small
        raw = [
            s for i, s in enumerate(raw) if not (s == "**" and i and raw[i - 1] == "**")
        ]
    return tuple(raw)


def _tuple_segment(path: object, seg: object) -> str:
    if type(seg) is str:
        return seg
    if type(seg) is int and seg >= 0:
        return str(seg)
    reason = f"segment {short_repr(seg)} must be a str or an int >= 0"
    raise InvalidPathError(path, reason)


def _check_segment(path: object, seg: str, *, slash: bool, wildcards: bool) -> None:
    if not seg:
        raise InvalidPathError(path, "empty segment")
    if len(seg) > MAX_SEGMENT_LENGTH:
        reason = f"a segment is longer than {MAX_SEGMENT_LENGTH} characters"
        raise InvalidPathError(path, reason)
    if "\x00" in seg:
        raise InvalidPathError(path, "NUL character in a segment")
    if "/" in seg:
        raise InvalidPathError(path, f"'/' inside segment {seg!r}")
    if slash and seg in (".", ".."):
        raise InvalidPathError(path, f"{seg!r} is not a valid segment")
    if seg in _WILDCARDS and not wildcards:
        reason = f"{seg!r} is a wildcard: allowed in subscription patterns only"
        raise InvalidPathError(path, reason)
    if not seg.isascii():
        try:
            seg.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidPathError(path, "lone surrogate in a segment") from None


_SPECIAL_SEGMENTS: Final = frozenset((".", "..", "*", "**"))


def check_keys_below(path: Segments, keys: Iterable[str]) -> None:
    """Check that each of *keys* makes a valid path below *path* (a Merge's keys).

    Each key must be a segment a path may hold (not empty, no ``/``, not
    ``.``, ``..``, ``*`` or ``**``, ...), and *path* must leave room for
    one more (a key may hold dots: the path then takes the slash form).

    Raises:
        InvalidPathError: The first key that does not, as a path below *path*.
    """
    if len(path) >= MAX_PATH_DEPTH:
        for key in keys:
            reason = f"more than {MAX_PATH_DEPTH} segments"
            raise InvalidPathError((*path, key), reason)
    special = _SPECIAL_SEGMENTS
    for key in keys:
        # The common key in place; any other is checked (and named) in full.
        if (
            not 0 < len(key) <= MAX_SEGMENT_LENGTH
            or "/" in key
            or "\x00" in key
            or key in special
            or not key.isascii()
        ):
            _check_segment((*path, key), key, slash=True, wildcards=False)


class _Node(Generic[_T]):
    __slots__ = ("children", "items")

    def __init__(self) -> None:
        self.children: dict[str, _Node[_T]] = {}
        self.items: list[_T] = []


class PatternTrie(Generic[_T]):
    """A trie over pattern segments that finds the items whose pattern matches a path.

    Not thread-safe; meant to be owned by one task (the state actor).

    Complexity: :meth:`match` visits each trie node reachable along the
    written path at most once per prefix length of the path, so it costs
    O(reached nodes x (depth + 1) + matches) for any shape of pattern, whatever
    the number of patterns that do not match. Its answers are cached by path
    (the same paths tend to be written again and again) until the trie
    changes; the cache holds at most :attr:`CACHE_SIZE` paths.
    """

    __slots__ = ("_cache", "_count", "_root", "last_steps")

    CACHE_SIZE: Final = 4096

    def __init__(self) -> None:
        """Create an empty trie."""
        self._root: _Node[_T] = _Node()
        self._count = 0
        self._cache: dict[Segments, dict[_T, tuple[int, bool]]] = {}
        self.last_steps = 0
        """States the last uncached :meth:`match` visited (its cost, for tests)."""

    def __len__(self) -> int:
        """Count the items in the trie."""
        return self._count

    def node_count(self) -> int:
        """Count the trie's nodes, the root included (O(nodes))."""
        count = 0
        stack = [self._root]
        while stack:
            node = stack.pop()
            count += 1
            stack.extend(node.children.values())
        return count

    def add(self, pattern: Segments, item: _T) -> None:
        """Register *item* under *pattern* (already parsed)."""
        node = self._root
        for seg in pattern:
            child = node.children.get(seg)
            if child is None:
                child = node.children[seg] = _Node()
            node = child
        node.items.append(item)
        self._count += 1
        self._cache.clear()

    def remove(self, pattern: Segments, item: _T) -> None:
        """Remove *item* from *pattern*, and the trie nodes left empty.

        Raises:
            KeyError: *item* is not registered under *pattern*.
        """
        trail: list[tuple[_Node[_T], str]] = []
        node = self._root
        for seg in pattern:
            child = node.children.get(seg)
            if child is None:
                raise KeyError(pattern)
            trail.append((node, seg))
            node = child
        try:
            node.items.remove(item)
        except ValueError:
            raise KeyError(pattern) from None
        self._count -= 1
        self._cache.clear()
        for parent, seg in reversed(trail):
            if node.items or node.children:
                break
            del parent.children[seg]
            node = parent

    def match(self, path: Segments) -> Mapping[_T, tuple[int, bool]]:
        """Find every item whose pattern matches *path*.

        Returns:
            ``{item: (depth, below)}``, shared with later calls: read it, do
            not change it. *depth* is the length of the prefix of *path* that
            the pattern matched (``len(path)`` for an exact match, less when
            the change bubbles up to it). *below* is true when the pattern
            reaches past *path*: the write replaced an ancestor of what the
            item watches.
        """
        cache = self._cache
        found = cache.get(path)
        if found is None:
            found = self._walk(path)
            if len(cache) >= self.CACHE_SIZE:
                cache.clear()
            cache[path] = found
        return found

    def _walk(self, path: Segments) -> dict[_T, tuple[int, bool]]:
        # A breadth of (trie node, segments consumed) states, each visited
        # once, as an NFA is simulated: a ``**`` node loops on itself one
        # segment at a time instead of trying every split of the path, so
        # the cost is O(trie nodes reached x (len(path) + 1)) for any shape
        # of pattern (``**.*.**.*...`` took exponential time by recursion).
        found: dict[_T, tuple[int, bool]] = {}
        n = len(path)
        seen: set[tuple[int, int]] = set()
        stack: list[tuple[_Node[_T], int, bool]] = [(self._root, 0, False)]
        while stack:
            node, i, globstar = stack.pop()
            state = (id(node), i)
            if state in seen:
                continue
            seen.add(state)
            for item in node.items:
                prev = found.get(item)
                if prev is None or prev[1] or prev[0] < i:
                    found[item] = (i, False)
            if globstar and i < n:
                stack.append((node, i + 1, True))  # ``**`` takes one more segment
            children = node.children
            if not children:
                continue
            if i == n:
                for seg, child in children.items():
                    if seg == "**":
                        stack.append((child, n, True))
                    elif (id(child), -1) not in seen:
                        seen.add((id(child), -1))
                        for item in _subtree_items(child):
                            found.setdefault(item, (n, True))
                continue
            exact = children.get(path[i])
            if exact is not None:
                stack.append((exact, i + 1, False))
            star = children.get("*")
            if star is not None:
                stack.append((star, i + 1, False))
            double = children.get("**")
            if double is not None:
                stack.append((double, i, True))  # ``**`` takes no segment yet
        self.last_steps = len(seen)
        return found


def _subtree_items(node: _Node[_T]) -> Iterator[_T]:
    stack = [node]
    while stack:
        node = stack.pop()
        yield from node.items
        stack.extend(node.children.values())
