"""Waiting for a state actor to park on its empty mailbox (tests of its idle step)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio.lowlevel

if TYPE_CHECKING:
    from stateward import StateHandle


async def parked(state: StateHandle) -> None:
    """Wait until the actor is parked on its empty mailbox (wrap in fail_after)."""
    while not state._core.idle:
        await anyio.lowlevel.checkpoint()
