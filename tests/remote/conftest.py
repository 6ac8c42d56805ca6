from __future__ import annotations

import pytest

from .redislib import RedisProcess


@pytest.fixture
def redis(tmp_path_factory):
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()
