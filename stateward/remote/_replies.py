"""What the owner answers on a client's reply stream, and what it reads first."""

from __future__ import annotations

from typing import Any, Final

from .._errors import (
    ActionRejectedError,
    InvalidActionError,
    PathNotFoundError,
    RevisionMismatchError,
    StatewardError,
)
from ..messages.actions import Action, Transaction
from ..paths import parse_path
from . import protocol

__all__ = ["REPLY_MAXLEN", "id_of", "invalid", "paths_of", "rejected"]

REPLY_MAXLEN: Final = 10_000
"""Entries a client's reply stream (and a delivery stream) keeps."""


def id_of(fields: object) -> str | None:
    """The request id of a stream entry that may be malformed, if it has one."""
    try:
        message = protocol._decode_fields(fields)
    except StatewardError:
        return None
    value = message.get("id")
    return value if type(value) is str and 0 < len(value) <= 256 else None


def paths_of(action: Action) -> list[tuple[str, ...]]:
    """Every path *action* writes at (a Transaction's, each of its own)."""
    if isinstance(action, Transaction):
        return [p for inner in action.actions for p in paths_of(inner)]
    return [parse_path(action.path)]  # type: ignore[attr-defined]


def invalid(exc: InvalidActionError) -> dict[str, Any]:
    """The refusal of a request that is not a valid one (the client raises it)."""
    return {
        "kind": "refused",
        "error": "InvalidActionError",
        "field": exc.field,
        "reason": exc.reason,
    }


def rejected(exc: ActionRejectedError) -> dict[str, Any]:
    """The rejection of an action the tree refused (the client raises it)."""
    reply: dict[str, Any] = {
        "kind": "rejected",
        "error": type(exc).__name__,
        "path": exc.path,
        "reason": exc.reason,
    }
    if isinstance(exc, RevisionMismatchError):
        reply["expected"], reply["actual"] = exc.expected, exc.actual
    elif isinstance(exc, PathNotFoundError):
        pass
    return reply
