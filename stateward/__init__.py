"""stateward: an actor-based concurrent state service for trio and asyncio.

One state actor owns a JSON state tree and applies typed actions in order;
subscriber actors receive the changes and answer with RAS-coded Acks that the
sender of an action can await. Everything public is re-exported here.
"""

from __future__ import annotations

from ._errors import (
    ActionRejectedError as ActionRejectedError,
    DuplicateNameError as DuplicateNameError,
    InvalidActionError as InvalidActionError,
    InvalidPathError as InvalidPathError,
    InvalidValueError as InvalidValueError,
    PathConflictError as PathConflictError,
    PathNotFoundError as PathNotFoundError,
    RevisionMismatchError as RevisionMismatchError,
    StateBrokenError as StateBrokenError,
    StateClosedError as StateClosedError,
    StatewardError as StatewardError,
)
from ._json import JSON as JSON
from .actors import (
    Handler as Handler,
    Overflow as Overflow,
    Receipt as Receipt,
    StateActor as StateActor,
    StateHandle as StateHandle,
    StateStatistics as StateStatistics,
    SubscriberStatistics as SubscriberStatistics,
    Subscription as Subscription,
    open_state as open_state,
)
from .messages import (
    RAS as RAS,
    Ack as Ack,
    AckReport as AckReport,
    Action as Action,
    ChangeKind as ChangeKind,
    Delete as Delete,
    EqualityOption as EqualityOption,
    Merge as Merge,
    Ping as Ping,
    ResultCode as ResultCode,
    Resync as Resync,
    Set as Set,
    StateChanged as StateChanged,
    Transaction as Transaction,
)

__version__ = "0.1.0"

__all__ = [
    "JSON",
    "RAS",
    "Ack",
    "AckReport",
    "Action",
    "ActionRejectedError",
    "ChangeKind",
    "Delete",
    "DuplicateNameError",
    "EqualityOption",
    "Handler",
    "InvalidActionError",
    "InvalidPathError",
    "InvalidValueError",
    "Merge",
    "Overflow",
    "PathConflictError",
    "PathNotFoundError",
    "Ping",
    "Receipt",
    "ResultCode",
    "Resync",
    "RevisionMismatchError",
    "Set",
    "StateActor",
    "StateBrokenError",
    "StateChanged",
    "StateClosedError",
    "StateHandle",
    "StateStatistics",
    "StatewardError",
    "SubscriberStatistics",
    "Subscription",
    "Transaction",
    "open_state",
]
