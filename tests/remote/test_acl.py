"""Least privilege: the owner and a client as Redis ACL users limited to their keys."""

from __future__ import annotations

import contextlib
import logging
import shlex
import shutil
import subprocess

import anyio
import pytest

from stateward import RAS, RemoteError, ResultCode, Set, open_state
from stateward.remote import connect_redis, serve_redis
from stateward.remote.protocol import acl_rules

pytestmark = pytest.mark.anyio

PASSWORDS = {"owner": "owner-secret-1", "client-w1": "client-secret-2"}


def _create_users(redis, rules=None, passwords=PASSWORDS) -> None:
    """Run each role's ACL SETUSER line, with its password, on *redis*."""
    cli = shutil.which("redis-cli")
    assert cli is not None, "redis-cli comes with redis-server"
    rules = acl_rules("jobs", "w1") if rules is None else rules
    for role, rule in rules.items():
        secret = passwords.get(role, passwords["owner"])
        words = shlex.split(rule.replace("<password>", secret))
        done = subprocess.run(
            [cli, "-p", str(redis.port), *words],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        assert done.stdout.strip() == "OK", done.stdout


async def test_the_whole_flow_runs_as_least_privilege_users(redis, caplog):
    await anyio.to_thread.run_sync(_create_users, redis)
    host = f"127.0.0.1:{redis.port}"
    owner_url = f"redis://sw-owner-jobs:{PASSWORDS['owner']}@{host}"
    client_url = f"redis://sw-jobs-w1:{PASSWORDS['client-w1']}@{host}"
    caplog.set_level(logging.DEBUG)
    with anyio.fail_after(60):
        async with (
            open_state({}) as state,
            serve_redis(state, owner_url, name="jobs"),
            connect_redis(client_url, name="jobs", client="w1") as remote,
        ):
            await remote.subscribe("", lambda e: RAS.SUCCESS, name="w1-dash")
            receipt = await remote.send(Set("a", 1))
            report = await receipt.acks(10)
            assert report.result == ResultCode.ALL_SUBS_SUCCESS
            assert await remote.get("a") == 1
            # It reads the feed, and may not write it.
            async with contextlib.aclosing(remote.watch("a", from_revision=0)) as feed:
                async for event in feed:
                    assert event.new_value == 1
                    break
            from stateward.remote._redis import open_connection

            async with open_connection(client_url) as raw:
                with pytest.raises(RemoteError, match="refused the command"):
                    await raw.xadd("sw:{jobs}:feed", {b"m": b"{}"})
            # Outside its keys: a typed error, not a hang.
            async with connect_redis(client_url, name="other", client="w1") as outside:
                with pytest.raises(RemoteError, match=r"NOPERM|ACL|permission"):
                    await outside.send(Set("a", 1), timeout=10)
    text = caplog.text
    assert PASSWORDS["owner"] not in text
    assert PASSWORDS["client-w1"] not in text
    print("ACL users: owner and client ran the whole flow; outside access refused")


async def test_the_signals_roles_publish_only_where_they_may(redis):
    from stateward.remote._redis import open_connection
    from stateward.signals import Signals, open_exporter, open_responder, protocol as sp

    rules = {**acl_rules("jobs"), **sp.acl_rules("jobs")}
    passwords = {"owner": "o-1", "signals-exporter": "e-2", "signals-responder": "r-3"}
    await anyio.to_thread.run_sync(_create_users, redis, rules, passwords)
    host = f"127.0.0.1:{redis.port}"
    owner = f"redis://sw-owner-jobs:o-1@{host}"
    exporter_url = f"redis://sw-signals-exporter:e-2@{host}"
    responder_url = f"redis://sw-signals-responder:r-3@{host}"
    with anyio.fail_after(60):
        async with (
            open_state({}) as state,
            serve_redis(state, owner, name="jobs", signals=Signals(respond_as=("ok",))),
            open_exporter(exporter_url, "bench") as exporter,
        ):
            await state.subscribe("signals.**", lambda e: None, name="ok")
            assert await exporter.initialize_and_wait(1, ["go"], timeout=10) == 0
            assert (await exporter.publish_signal("go"))[
                0
            ] == ResultCode.ALL_SUBS_SUCCESS
            # A responder cannot forge a signal, an exporter cannot forge a response.
            async with open_connection(responder_url) as conn:
                with pytest.raises(RemoteError, match="refused the command"):
                    await conn.publish(sp.SIGNALS, b"{}")
            async with open_connection(exporter_url) as conn:
                with pytest.raises(RemoteError, match="refused the command"):
                    await conn.publish(sp.RESPONSES, b"{}")
            async with open_responder(responder_url, "r"):
                pass  # and it may subscribe to the signals
