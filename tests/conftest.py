from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every backend-neutral test under asyncio and under trio."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend of a Store's own loop, for tests of the synchronous facade."""
    return request.param  # type: ignore[no-any-return]
