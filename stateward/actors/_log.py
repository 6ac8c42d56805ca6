"""The action log (the last N actions and what became of them) and redaction.

Recording costs one append of a tuple per action; the entries are formatted,
and redacted, only when someone reads the log. Redaction patterns (``*`` and
``**`` allowed) name paths whose values never appear in the log or in
``stateward inspect``: a value at or below such a path is replaced by
``"<redacted>"``, and so is every part of a bigger value that falls under one.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Final, final

import attrs

from ..paths import PatternTrie, format_path, parse_pattern

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .._changes import Change
    from .._json import JSON
    from ..messages.actions import Action
    from ..paths import Segments

__all__ = ["REDACTED", "ActionLog", "LoggedAction", "Redactor"]

REDACTED: Final = "<redacted>"


@final
@attrs.frozen
class LoggedAction:
    """One action as the action log remembers it (values redacted)."""

    revision: int
    """The revision after it (unchanged when it changed nothing)."""
    action_id: str
    """Its id."""
    kind: str
    """Its type: ``"Set"``, ``"Transaction"``, ..."""
    source: str | None
    """Its ``source``."""
    result: str
    """``"applied"``, ``"unchanged"`` or ``"rejected: <why>"``."""
    changes: tuple[tuple[str, JSON], ...] = ()
    """``(path, new value)`` per change (None for a deletion), redacted."""
    derive_errors: tuple[str, ...] = ()
    """Derivations that raised after it."""


class Redactor:
    """Masks the values under the configured patterns."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(format_path(parse_pattern(p)) for p in patterns)
        self._trie: PatternTrie[int] = PatternTrie()
        for i, pattern in enumerate(self.patterns):
            self._trie.add(parse_pattern(pattern), i)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def mask(self, path: Segments, value: JSON) -> JSON:
        """Return *value* (found at *path*) with every redacted part replaced."""
        if not self.patterns:
            return value
        matches = self._trie.match(path)
        if any(not below for _depth, below in matches.values()):
            return REDACTED  # at or below a redacted pattern
        if not matches:
            return value  # nothing redacted at or below this path
        return self._mask_below(path, value)

    def _mask_below(self, path: Segments, value: JSON) -> JSON:
        if isinstance(value, dict):
            return {k: self.mask((*path, k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.mask((*path, str(i)), v) for i, v in enumerate(value)]
        return value


class ActionLog:
    """A ring of the last *size* actions (0 keeps none)."""

    def __init__(self, size: int, redactor: Redactor) -> None:
        self.size = size
        self.redactor = redactor
        self._ring: deque[tuple[Any, ...]] = deque(maxlen=size or 1)

    def record(
        self,
        revision: int,
        action: Action,
        changes: list[Change] | None,
        error: BaseException | None,
        derive_errors: tuple[str, ...],
    ) -> None:
        """Remember one action; formatting waits until the log is read."""
        if self.size:
            self._ring.append((revision, action, changes, error, derive_errors))

    def entries(self) -> list[LoggedAction]:
        """The remembered actions, oldest first, formatted and redacted."""
        out: list[LoggedAction] = []
        mask = self.redactor.mask
        for revision, action, changes, error, derive_errors in self._ring:
            if error is not None:
                result = f"rejected: {error}"
            elif changes:
                result = "applied"
            else:
                result = "unchanged"
            shown = tuple(
                (format_path(c.path), mask(c.path, c.new)) for c in changes or ()
            )
            out.append(
                LoggedAction(
                    revision,
                    action.id,
                    type(action).__name__,
                    action.source,
                    result,
                    shown,
                    derive_errors,
                )
            )
        return out
