"""Everything that runs: one module per actor."""

from __future__ import annotations

from ._log import LoggedAction as LoggedAction
from ._track import Reaction as Reaction, Reader as Reader
from .checkpoints import (
    Checkpointable as Checkpointable,
    CheckpointInfo as CheckpointInfo,
    Checkpoints as Checkpoints,
)
from .persistence import (
    Durability as Durability,
    PersistenceConfig as PersistenceConfig,
)
from .retention import (
    KeepNewest as KeepNewest,
    RetentionPolicy as RetentionPolicy,
    SaveEvery as SaveEvery,
)
from .state import (
    Receipt as Receipt,
    StateActor as StateActor,
    StateHandle as StateHandle,
    StateStatistics as StateStatistics,
    Subscription as Subscription,
    open_state as open_state,
)
from .store import (
    JsonSerializer as JsonSerializer,
    PickleSerializer as PickleSerializer,
    Serializer as Serializer,
    Store as Store,
    StoreCheckpoints as StoreCheckpoints,
)
from .subscriber import (
    Handler as Handler,
    Overflow as Overflow,
    SubscriberStatistics as SubscriberStatistics,
)

__all__ = [
    "CheckpointInfo",
    "Checkpointable",
    "Checkpoints",
    "Durability",
    "Handler",
    "JsonSerializer",
    "KeepNewest",
    "LoggedAction",
    "Overflow",
    "PersistenceConfig",
    "PickleSerializer",
    "Reaction",
    "Reader",
    "Receipt",
    "RetentionPolicy",
    "SaveEvery",
    "Serializer",
    "StateActor",
    "StateHandle",
    "StateStatistics",
    "Store",
    "StoreCheckpoints",
    "SubscriberStatistics",
    "Subscription",
    "open_state",
]
