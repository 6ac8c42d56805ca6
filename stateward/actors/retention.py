"""When to save a checkpoint, and which checkpoints to keep.

Both are plain objects you may replace with your own:

* a **retention policy** is any callable ``policy(checkpoints) -> to_remove``
  that receives the complete checkpoints, oldest first, and returns those to
  delete; :class:`KeepNewest` keeps the newest *n*. ``Checkpoints`` runs it
  after every save and whenever you call ``retain()``;
* a **save condition** is any callable ``condition() -> bool``;
  :class:`SaveEvery` is true every *seconds* or every *steps* calls, in an
  async loop (``if condition(): await checkpoints.save()``) or a plain one
  (``if condition(): store.save()``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TypeAlias, final

from .._checks import check_int, check_seconds
from .._errors import InvalidActionError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from .checkpoints import CheckpointInfo

__all__ = ["KeepNewest", "RetentionPolicy", "SaveEvery"]

RetentionPolicy: TypeAlias = (
    "Callable[[Sequence[CheckpointInfo]], Iterable[CheckpointInfo]]"
)
"""Given the complete checkpoints, oldest first, return those to remove."""


@final
class KeepNewest:
    """Keep the newest *n* checkpoints (by sequence, never by the clock)."""

    def __init__(self, n: int) -> None:
        check_int("n", n, 1)
        self.n = n

    def __call__(self, checkpoints: Sequence[CheckpointInfo]) -> list[CheckpointInfo]:
        """Return every checkpoint but the newest *n*."""
        return list(checkpoints[: -self.n])

    def __repr__(self) -> str:
        return f"KeepNewest({self.n})"


@final
class SaveEvery:
    """A save condition: true once every *seconds*, or every *steps* calls.

    ``condition()`` counts one step and answers whether to save now; the
    first call is true when *immediately*. With both *seconds* and *steps*,
    whichever comes first. Never blocks; not thread-safe (one loop owns it).
    *clock* is for tests (default ``time.monotonic``).
    """

    def __init__(
        self,
        *,
        seconds: float | None = None,
        steps: int | None = None,
        immediately: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if seconds is None and steps is None:
            raise InvalidActionError("seconds", "give seconds, steps or both")
        check_seconds("seconds", seconds, positive=True, optional=True)
        check_int("steps", steps, 1, optional=True)
        self.seconds = seconds
        self.steps = steps
        self._clock = clock
        self._since = clock()
        self._count = 0
        self._first = immediately

    def __call__(self) -> bool:
        """Count a step; True when it is time to save (then it starts over)."""
        self._count += 1
        now = self._clock()
        due = self._first or (
            (self.steps is not None and self._count >= self.steps)
            or (self.seconds is not None and now - self._since >= self.seconds)
        )
        if due:
            self._first = False
            self._count = 0
            self._since = now
        return due

    def __repr__(self) -> str:
        return f"SaveEvery(seconds={self.seconds}, steps={self.steps})"
