"""state-signals compatibility: the protocol, a bridge, and a native async API.

* :class:`Signals`: ``serve_redis(state, url, name=..., signals=Signals(...))``
  lets unchanged state-signals exporters and responders work with a
  stateward state (see ``docs/signals.md``).
* :func:`open_exporter` and :func:`open_responder`: the same protocol for
  new code, async on trio or asyncio, without threads or polling.

Needs the ``redis`` extra (coredis).
"""

from __future__ import annotations

from .bridge import Signals, SignalsBridge
from .native import SignalExporter, SignalResponder, open_exporter, open_responder
from .protocol import Response, Signal

__all__ = [
    "Response",
    "Signal",
    "SignalExporter",
    "SignalResponder",
    "Signals",
    "SignalsBridge",
    "open_exporter",
    "open_responder",
]
