"""stateward: an actor-based concurrent state service for trio and asyncio.

One state actor owns a JSON state tree and applies typed actions in order;
subscriber actors receive the changes and answer with RAS-coded Acks that the
sender of an action can await. Everything public is re-exported here.
"""

from __future__ import annotations

from ._errors import (
    ActionRejectedError as ActionRejectedError,
    CorruptStateError as CorruptStateError,
    DuplicateNameError as DuplicateNameError,
    DurabilityError as DurabilityError,
    InvalidActionError as InvalidActionError,
    InvalidPathError as InvalidPathError,
    InvalidValueError as InvalidValueError,
    PathConflictError as PathConflictError,
    PathNotFoundError as PathNotFoundError,
    PersistenceError as PersistenceError,
    RevisionMismatchError as RevisionMismatchError,
    StateBrokenError as StateBrokenError,
    StateClosedError as StateClosedError,
    StateLockedError as StateLockedError,
    StatewardError as StatewardError,
)
from ._json import JSON as JSON
from .actors import (
    Durability as Durability,
    Handler as Handler,
    Overflow as Overflow,
    PersistenceConfig as PersistenceConfig,
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
    "CorruptStateError",
    "Delete",
    "DuplicateNameError",
    "Durability",
    "DurabilityError",
    "EqualityOption",
    "Handler",
    "InvalidActionError",
    "InvalidPathError",
    "InvalidValueError",
    "Merge",
    "Overflow",
    "PathConflictError",
    "PathNotFoundError",
    "PersistenceConfig",
    "PersistenceError",
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
    "StateLockedError",
    "StateStatistics",
    "StatewardError",
    "SubscriberStatistics",
    "Subscription",
    "Transaction",
    "open_state",
]
