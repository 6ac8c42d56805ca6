"""Everything that flows between actors: attrs classes, validated, no I/O."""

from __future__ import annotations

from .acks import (
    RAS as RAS,
    Ack as Ack,
    AckReport as AckReport,
    ResultCode as ResultCode,
)
from .actions import (
    Action as Action,
    Delete as Delete,
    EqualityOption as EqualityOption,
    Merge as Merge,
    Ping as Ping,
    Set as Set,
    Transaction as Transaction,
)
from .events import (
    ChangeKind as ChangeKind,
    Progress as Progress,
    Resync as Resync,
    StateChanged as StateChanged,
)

__all__ = [
    "RAS",
    "Ack",
    "AckReport",
    "Action",
    "ChangeKind",
    "Delete",
    "EqualityOption",
    "Merge",
    "Ping",
    "Progress",
    "ResultCode",
    "Resync",
    "Set",
    "StateChanged",
    "Transaction",
]
