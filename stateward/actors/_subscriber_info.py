"""What a subscriber is told to do when its mailbox is full, and what it reports.

:class:`Overflow`, the policy a subscriber is made with, and
:class:`SubscriberStatistics`, the snapshot of its counters that
``Subscription.statistics()`` and ``subscriber_statistics()`` give. Both
are plain values, safe to hold and share from any task or thread; the
subscriber actor itself is in :mod:`.subscriber`.
"""

from __future__ import annotations

import enum
from typing import final

import attrs

__all__ = ["Overflow", "SubscriberStatistics"]


class Overflow(enum.Enum):
    """What a subscriber's full mailbox does with the next delivery."""

    BLOCK = "block"
    """Make the state actor wait up to ``block_timeout`` s, then drop and Resync."""
    DROP = "drop"
    """Drop at once; the subscriber gets one Resync when it catches up."""


@final
@attrs.frozen
class SubscriberStatistics:
    """A snapshot of one subscriber's counters."""

    name: str
    """The subscriber's name."""
    pattern: str
    """Its pattern."""
    queued: int
    """Deliveries waiting in the mailbox now."""
    mailbox_size: int
    """The mailbox's bound."""
    peak: int
    """The most deliveries ever waiting at once."""
    delivered: int
    """Deliveries handled (acknowledged)."""
    dropped: int
    """Deliveries dropped by the overflow policy."""
    resyncs: int
    """Resync events handed to the handler."""
    acks_ok: int
    """Acks sent with success."""
    acks_failed: int
    """Acks sent with a failure code."""
    acks_by_code: tuple[tuple[int, int], ...] = ()
    """``(RAS code, count)`` for every code answered, by code."""
    ack_latency_mean: float = 0.0
    """Mean seconds from a delivery entering the mailbox to its Ack."""
    ack_latency_max: float = 0.0
    """Longest such time, in seconds."""
