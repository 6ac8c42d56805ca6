"""Inspection: the action log, redaction, and per-subscriber statistics."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from stateward import (
    RAS,
    ActionRejectedError,
    InvalidActionError,
    InvalidPathError,
    Set,
    StateChanged,
    Transaction,
    open_state,
)

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


async def test_the_action_log_keeps_the_last_actions_and_their_results() -> None:
    async with open_state({"n": 0}, action_log=3) as state:
        await state.derive("inv", "n", lambda n: 1 / n if n else 0)
        await state.send(Set("n", 2, source="worker-1"))
        await state.send(Set("n", 2))  # equal: unchanged
        with pytest.raises(ActionRejectedError):
            await state.send(Transaction([Set("x", 1), Set("x.y", 2)]))
        log = state.action_log()
        assert [(e.kind, e.result.split(":")[0]) for e in log] == [
            ("Set", "applied"),
            ("Set", "unchanged"),
            ("Transaction", "rejected"),
        ]
        first = log[0]
        assert (first.revision, first.source) == (2, "worker-1")
        assert first.changes == (("n", 2), ("inv", 0.5))
        assert log[2].result == (
            "rejected: cannot apply at 'x.y': cannot go below 'x': it holds an int"
        )
        assert log[2].changes == ()  # nothing of it was applied
    async with open_state({}, action_log=0) as state:
        await state.send(Set("n", 1))
        assert state.action_log() == []  # keeps none


async def test_redacted_values_never_appear_in_the_log() -> None:
    async with open_state(redact=["users.*.password", "secrets.**"]) as state:
        await state.send(Set("users.u1.password", "hunter2"))
        await state.send(Set("users", {"u2": {"password": "s3cret", "name": "Ann"}}))
        await state.send(Set("secrets", {"api": {"key": "k-123"}}))
        await state.send(Set("plain", "visible"))
        text = repr(state.action_log())
        for secret in ("hunter2", "s3cret", "k-123"):
            assert secret not in text
        assert "Ann" in text
        assert "visible" in text
        assert "<redacted>" in text
        assert await state.get("users.u2.password") == "s3cret"  # the state has it
    with pytest.raises(InvalidPathError):
        async with open_state(redact=["a..b"]):
            pass
    for bad in ("users.*.password", None, 3, b"x"):  # (None: a TypeError before)
        with pytest.raises(InvalidActionError, match="redact"):
            async with open_state(redact=bad):  # type: ignore[arg-type]
                pass
    async with open_state(redact=(p for p in ["a.*"])) as state:  # any iterable
        assert state  # (opened)


def test_stateward_inspect_redacts(tmp_path: Path) -> None:
    import anyio

    async def fill() -> None:
        async with open_state(state_dir=tmp_path) as state:
            await state.send(Set("users.u1", {"password": "hunter2", "name": "Bo"}))

    anyio.run(fill)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "stateward.cli",
            "inspect",
            str(tmp_path),
            "--redact",
            "users.*.password",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "hunter2" not in done.stdout
    assert '"password": "<redacted>"' in done.stdout
    assert '"name": "Bo"' in done.stdout


async def test_subscriber_statistics_count_acks_by_code_and_latency() -> None:
    async with open_state({}) as state:

        def handler(event: StateChanged) -> int:
            return RAS.SUCCESS if event.new_value != 3 else 5

        sub = await state.subscribe("n", handler)
        for n in range(5):
            receipt = await state.send(Set("n", n))
            await receipt.acks(timeout=5)
        stats = sub.statistics()
        assert stats.acks_by_code == ((1, 4), (5, 1))
        assert (stats.acks_ok, stats.acks_failed) == (4, 1)
        assert 0 <= stats.ack_latency_mean <= stats.ack_latency_max
        assert stats.ack_latency_max > 0
