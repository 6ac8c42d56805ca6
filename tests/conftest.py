from __future__ import annotations

import math

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every backend-neutral test under asyncio and under trio."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend of a Store's own loop, for tests of the synchronous facade."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _forks_weighed_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test weighs forks alike, whatever the test process's size.

    A large read's choice between copying and forking weighs the latest
    fork's pause, which this (large) process's earlier forks would set,
    test order deciding: it starts unmeasured, as in a fresh process. A
    snapshot's maker (``snapshot_child="auto"``) goes by the tree's size
    alone here, not also by the pause of a fork of the test process (tests
    count snapshots that a quick fork makes). Tests of either way choose
    it themselves.
    """
    from stateward.actors import _snapshots
    from stateward.actors.persistence import _fork

    monkeypatch.setattr(_fork, "last_pause", 0.001)
    budget = max(_fork.COPY_AT_LEAST, int(0.001 / _fork.COPY_SECONDS))
    monkeypatch.setattr(_fork, "copy_budget", budget)
    monkeypatch.setattr(_snapshots, "REPLAY_FROM_PAUSE", math.inf)
