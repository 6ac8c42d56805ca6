"""The forked children that serialise a tree, watched by the tests.

:func:`spy_forks` records every child a module starts; :func:`assert_reaped`
checks that stateward reaped one (and kills it if not, so that a failing test
leaves nothing behind); :func:`holding` takes every token of a capacity
limiter, so that nothing gets a worker thread from it meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import TYPE_CHECKING, Any

import pytest

from stateward.actors._files import Files
from stateward.actors.persistence._fork import ForkedBody
from stateward.actors.persistence._snapshot import read_snapshot

if TYPE_CHECKING:
    import threading
    from collections.abc import AsyncIterator
    from types import ModuleType

    import anyio


def spy_forks(
    monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str = "fork_serialise"
) -> list[ForkedBody]:
    """Record each child that *module*'s ``fork_serialise`` (or *name*) starts."""
    children: list[ForkedBody] = []
    real_start = getattr(module, name)

    def spy_start(*args: Any) -> ForkedBody:
        forked = real_start(*args)
        assert forked is not None, "this platform forks"
        children.append(forked)
        return forked

    monkeypatch.setattr(module, name, spy_start)
    return children


def assert_reaped(child: ForkedBody) -> None:
    """The child is gone and reaped (not running, not a zombie)."""
    try:
        with pytest.raises(ChildProcessError):  # reaped already
            os.waitpid(child.pid, os.WNOHANG)
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)  # killed: at once


@contextlib.asynccontextmanager
async def holding(limiter: anyio.CapacityLimiter) -> AsyncIterator[None]:
    """Hold every token of *limiter* for the duration."""
    holders = [object() for _ in range(int(limiter.total_tokens))]
    for holder in holders:
        await limiter.acquire_on_behalf_of(holder)
    try:
        yield
    finally:
        for holder in holders:
            limiter.release_on_behalf_of(holder)


def held_back(child: ForkedBody, release: threading.Event) -> ForkedBody:
    """*child*, whose bytes are read only once *release* is set (30 s at most)."""

    class Held(ForkedBody):
        def read(self, timeout: float | None = None) -> bytes:
            release.wait(30)
            return super().read(timeout)

    return Held(child.pid, child.fd)


def snapshot_files(directory: object) -> dict[int, object]:
    """Each snapshot file in *directory*, read back: ``{revision: tree}``."""
    found = {}
    for name in os.listdir(directory):  # type: ignore[call-overload]
        if name.startswith("snapshot-") and name.endswith(".snap"):
            path = os.path.join(directory, name)  # type: ignore[call-overload]
            snap = read_snapshot(Files(), path, name)
            found[snap.revision] = snap.root
    return found
