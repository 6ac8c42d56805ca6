"""The remote commands of ``stateward``: serve, get and set."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

import anyio

from .._cli_progress import progress_printer
from .._errors import StatewardError
from ..actors.state import open_state
from ..messages.actions import Set
from ..messages.events import Resync
from ._serve import serve_redis
from .client import connect_redis
from .protocol import acl_rules

__all__ = [
    "acl_command",
    "get_command",
    "serve_command",
    "set_command",
    "watch_command",
]


def _fail(command: str, exc: BaseException) -> int:
    print(f"stateward {command}: {exc}", file=sys.stderr)
    return 1


def serve_command(
    state_dir: str,
    url: str,
    name: str,
    durability: str,
    signals: dict[str, Any] | None = None,
) -> int:
    """Serve the state in *state_dir* as *name* until interrupted (Ctrl-C).

    *signals*: the keyword arguments of a state-signals bridge, or None.
    """
    from ..signals import Signals

    try:
        bridge = None if signals is None else Signals(**signals)
    except StatewardError as exc:
        return _fail("serve", exc)

    async def run() -> None:
        async with (
            open_state(
                {},
                state_dir=state_dir,
                durability=durability,  # type: ignore[arg-type]
                on_recovery_progress=progress_printer(f"recovering {state_dir}"),
            ) as state,
            serve_redis(state, url, name=name, signals=bridge) as server,
        ):
            print(
                f"serving {state_dir} (revision {state.revision}) as {name!r} "
                f"on {_safe(url)}; Ctrl-C stops",
                flush=True,
            )
            if server.signals is not None:
                print(f"state-signals bridge: {server.signals}", flush=True)
            try:
                await anyio.sleep_forever()
            finally:
                print(f"stopped: {server}", flush=True)

    try:
        anyio.run(run)
    except KeyboardInterrupt:
        return 0
    except StatewardError as exc:
        return _fail("serve", exc)
    return 0


def get_command(url: str, name: str, path: str, timeout: float) -> int:
    """Print the JSON value at *path* of the state served as *name*."""

    async def run() -> object:
        async with connect_redis(url, name=name) as remote:
            return await remote.get(path, timeout=timeout)

    try:
        value = anyio.run(run)
    except StatewardError as exc:
        return _fail("get", exc)
    print(json.dumps(value, indent=2, ensure_ascii=False))
    return 0


def set_command(url: str, name: str, path: str, value: str, timeout: float) -> int:
    """Write the JSON *value* at *path*; print the revision and the AckReport."""
    try:
        decoded = json.loads(value)
    except ValueError as exc:
        print(f"stateward set: VALUE is not JSON: {exc}", file=sys.stderr)
        return 2

    async def run() -> str:
        async with connect_redis(url, name=name) as remote:
            receipt = await remote.send(Set(path, decoded), timeout=timeout)
            report = await receipt.acks(timeout=timeout)
            return (
                f"revision {receipt.revision} (changed: {receipt.changed})\n"
                f"acks: {report.result.name} "
                + " ".join(f"{a.subscriber}={a.ras}" for a in report.acks)
                + "".join(f" {m}=(no answer)" for m in report.missing)
            )

    try:
        print(anyio.run(run))
    except StatewardError as exc:
        return _fail("set", exc)
    return 0


def watch_command(url: str, name: str, pattern: str, from_revision: int | None) -> int:
    """Print each change at *pattern*, one JSON line each, until interrupted."""

    async def run() -> None:
        async with connect_redis(url, name=name) as remote:
            watcher = f"watch-{remote.client}"[:64]
            feed = remote.watch(pattern, name=watcher, from_revision=from_revision)
            async with contextlib.aclosing(feed) as events:
                async for event in events:
                    if isinstance(event, Resync):
                        line = {"resync": event.pattern, "dropped": event.dropped}
                    else:
                        line = {
                            "revision": event.revision,
                            "path": event.path,
                            "kind": event.kind.value,
                            "value": event.new_value,
                        }
                    print(json.dumps(line, ensure_ascii=False), flush=True)

    try:
        anyio.run(run)
    except KeyboardInterrupt:
        return 0
    except StatewardError as exc:
        return _fail("watch", exc)
    return 0


def acl_command(name: str, client: str | None, *, signals: bool = False) -> int:
    """Print the Redis ACL rules of each role of the state *name*."""
    from ..signals.protocol import acl_rules as signals_rules

    try:
        rules = acl_rules(name, client)
        if signals:
            rules.update(signals_rules(name))
    except StatewardError as exc:
        return _fail("acl", exc)
    for role, rule in rules.items():
        print(f"# {role}")
        print(rule)
    return 0


def _safe(url: str) -> str:
    """*url* without its password, for printing."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
