"""How many states of this process run, in any thread.

A large JSON value decoded in one call holds the GIL for as long as that
takes (0.65 s for a million leaves with orjson), and no other thread of the
process runs meanwhile: every running state's loop stops. Where a state
opens beside others (:data:`RUNNING` counts them), its file is decoded in
short calls instead; alone, in one call, at its fastest.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["RUNNING"]


class _Running:
    """A count of running states; thread-safe."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    def any(self) -> bool:
        """Whether a state of this process runs now (any thread)."""
        return self._count > 0

    @contextmanager
    def one(self) -> Iterator[None]:
        """Count one more running state for the duration of the block."""
        with self._lock:
            self._count += 1
        try:
            yield
        finally:
            with self._lock:
                self._count -= 1


RUNNING: Final = _Running()
