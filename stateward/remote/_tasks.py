"""The task group shapes of the remote layer (owner and client)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import anyio.abc

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.abc import TaskGroup

__all__ = ["background", "task_group"]


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


async def task_group(
    *, task_status: anyio.abc.TaskStatus[TaskGroup] = anyio.TASK_STATUS_IGNORED
) -> None:
    """A task group in a task of its own (``tg.start``: gives the group).

    Cancelling its scope stops the tasks started in it and ends this task,
    not the task that started it: the owner stops serving, its caller's
    block goes on.
    """
    async with anyio.create_task_group() as tg:
        task_status.started(tg)
        await anyio.sleep_forever()
