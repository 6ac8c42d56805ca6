"""Acknowledgements: RAS codes, what each subscriber answered, and the report.

RAS (Response-Action-Success) follows state-signals: **1 is success, any other
value is a failure**. :class:`RAS` names a few failure codes of its own, and a
handler may return any other int; it still counts as a failure.
"""

from __future__ import annotations

import enum
from typing import final

import attrs

__all__ = ["RAS", "Ack", "AckReport", "ResultCode"]


class RAS(enum.IntEnum):
    """Response-Action-Success codes: 1 is success, everything else a failure."""

    FAILURE = 0
    """The subscriber did not do what the change asked for."""
    SUCCESS = 1
    """The subscriber handled the change."""
    ERROR = 2
    """The handler raised; the Ack's message holds the error text."""
    TIMEOUT = 3
    """The handler ran past its subscriber's ``handler_timeout`` and was cancelled."""
    INVALID = 4
    """The handler returned something that is not an int or None."""

    @staticmethod
    def is_success(code: int) -> bool:
        """Tell whether *code* means success (only 1 does)."""
        return code == 1


class ResultCode(enum.IntEnum):
    """The overall outcome of one action's acknowledgements (as in state-signals)."""

    ALL_SUBS_SUCCESS = 0
    """Every subscriber that was asked answered with success."""
    SUB_FAILED = 1
    """At least one subscriber answered with a failure code."""
    MISSING_RESPONSE = 2
    """No failure, but at least one subscriber did not answer in time."""


@final
@attrs.frozen
class Ack:
    """One subscriber's answer to one action."""

    subscriber: str
    """The subscriber's name."""
    revision: int
    """The revision it answers for."""
    ras: int
    """Its RAS code: 1 is success, anything else a failure."""
    message: str = ""
    """Free text: the error text when the handler raised."""

    @property
    def ok(self) -> bool:
        """Whether the RAS code is success."""
        return self.ras == 1


@final
@attrs.frozen
class AckReport:
    """What every subscriber did with one action, as awaited by its sender."""

    result: ResultCode
    """The summary: SUB_FAILED wins over MISSING_RESPONSE."""
    acks: tuple[Ack, ...]
    """Every answer received, in arrival order."""
    missing: tuple[str, ...]
    """Names of the subscribers that were asked and did not answer (timeout,
    event dropped by overflow, unsubscribed, or the actor stopped)."""

    @property
    def ok(self) -> bool:
        """Whether every subscriber that was asked answered with success."""
        return self.result is ResultCode.ALL_SUBS_SUCCESS

    @property
    def failed(self) -> tuple[Ack, ...]:
        """The answers with a failure code."""
        return tuple(a for a in self.acks if a.ras != 1)
