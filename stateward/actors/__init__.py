"""Everything that runs: one module per actor."""

from __future__ import annotations

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
    "Handler",
    "Overflow",
    "Receipt",
    "StateActor",
    "StateHandle",
    "StateStatistics",
    "SubscriberStatistics",
    "Subscription",
    "open_state",
]
