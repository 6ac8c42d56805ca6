"""Beyond one process: serve a state over Redis Streams, and reach it remotely.

``serve_redis`` (the owner, beside the state actor and its journal) and
``connect_redis`` (a client, anywhere). Needs the ``redis`` extra:
``pip install 'stateward[redis]'`` (coredis).
"""

from __future__ import annotations

from ._serve import serve_redis
from .client import RemoteReceipt, RemoteState, RemoteSubscription, connect_redis
from .server import RedisServer

__all__ = [
    "RedisServer",
    "RemoteReceipt",
    "RemoteState",
    "RemoteSubscription",
    "connect_redis",
    "serve_redis",
]
