"""Everything that runs: one module per actor."""

from __future__ import annotations

from .persistence import (
    Durability as Durability,
    PersistenceConfig as PersistenceConfig,
)
from .state import (
    Receipt as Receipt,
    StateActor as StateActor,
    StateHandle as StateHandle,
    StateStatistics as StateStatistics,
    Subscription as Subscription,
    open_state as open_state,
)
from .subscriber import (
    Handler as Handler,
    Overflow as Overflow,
    SubscriberStatistics as SubscriberStatistics,
)

__all__ = [
    "Durability",
    "Handler",
    "Overflow",
    "PersistenceConfig",
    "Receipt",
    "StateActor",
    "StateHandle",
    "StateStatistics",
    "SubscriberStatistics",
    "Subscription",
    "open_state",
]
