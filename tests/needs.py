"""What a test needs from the machine: skip, naming it, where it is missing.

.ci/run installs everything the tests need (redis-server, openssl, the
reference state-signals library, the mount command and root for the tmpfs):
under CI a missing one is an error of the CI machine, so the test fails
instead of skipping.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    """Skip the test, naming *reason*; under CI (``CI`` set), fail instead."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide it: {reason}")
    pytest.skip(reason)
