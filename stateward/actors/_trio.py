"""The trio half of :mod:`._mailbox`: imported only when trio runs the actor."""

from __future__ import annotations

from typing import ClassVar

import trio

__all__ = ["TrioSignal"]


class TrioSignal:
    """A :class:`~._mailbox.Signal` on trio's low-level parking API.

    ``trio.Event`` keeps a set of waiting tasks; one waiter needs a slot.
    trio calls :meth:`_abort` when the waiting task is cancelled before
    :meth:`set` rescheduled it: that is what :meth:`abandoned` reports.
    """

    __slots__ = ("_abandoned", "_flag", "_task")
    by_thread: ClassVar[bool] = False

    def __init__(self) -> None:
        self._flag = False
        self._abandoned = False
        self._task: trio.lowlevel.Task | None = None

    def is_set(self) -> bool:
        return self._flag

    def abandoned(self) -> bool:
        return self._abandoned

    @trio.lowlevel.enable_ki_protection  # as trio.Event.set: no KI half-way
    def set(self) -> None:
        if not self._flag:
            self._flag = True
            task = self._task
            if task is not None:
                self._task = None
                trio.lowlevel.reschedule(task)

    async def wait(self) -> None:
        if self._flag:
            await trio.lowlevel.checkpoint()
            return
        assert self._task is None, "a Signal has one waiter, once"
        self._task = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, _raise_cancel: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
        self._task = None
        self._abandoned = True
        return trio.lowlevel.Abort.SUCCEEDED
