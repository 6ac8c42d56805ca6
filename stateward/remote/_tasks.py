"""One task group shape the remote layer opens twice (owner and client)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.abc import TaskGroup

__all__ = ["background"]


@asynccontextmanager
async def background() -> AsyncIterator[TaskGroup]:
    """A task group for background tasks, cancelled when the block ends.

    What the block raises (a failed ``tg.start`` included) leaves as itself,
    not wrapped in an exception group, once the background tasks are done.
    """
    error: BaseException | None = None
    async with anyio.create_task_group() as tg:
        try:
            yield tg
        except BaseException as exc:  # noqa: BLE001 - re-raised below, unwrapped
            error = exc
        tg.cancel_scope.cancel()
    if error is not None:
        raise error
