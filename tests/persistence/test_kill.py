"""D1: SIGKILL the real service, in a subprocess, again and again.

Each round starts a child on the state directory (alternating backends) that
sends a seeded mix of actions durably, one at a time, and reports every
acknowledgement on a pipe. The parent kills it after a random number of
acknowledgements, or the child kills itself at a named crash point. The
parent then recovers the directory and checks that the state equals the model
applied to a prefix that includes every acknowledged action (one action may
be in flight: the prefix is the acknowledged count or one more).

STATEWARD_KILLS sets the number of kills (default 100, the CI figure).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stateward.actors.persistence import (
    PersistenceConfig,
    lock_directory,
    recover,
    unlock_directory,
)

from .workload import actions, apply_all

CHILD = Path(__file__).with_name("kill_child.py")
KILLS = int(os.environ.get("STATEWARD_KILLS", "100"))
POINTS = [
    "journal-written",  # before the journal fsync
    "journal-synced",  # after the fsync, before the acknowledgement
    "atomic-temp-synced",  # a snapshot's temp file synced, not yet renamed
    "atomic-replaced",  # after the rename, before the directory fsync
    "retention-removed-snapshot",
    "recovery-replayed-segment",
]
PER_RUN = 30
KEEP = 2


def _recover(state_dir: Path) -> tuple[object, int]:
    lock = lock_directory(PersistenceConfig(str(state_dir)).files, str(state_dir))
    try:
        recovered = recover(
            PersistenceConfig(str(state_dir), keep_snapshots=KEEP), None
        )
        recovered.journal.close()
    finally:
        unlock_directory(lock)
    return recovered.tree.root, recovered.tree.revision


@pytest.mark.parametrize(
    "kill_count",
    [
        pytest.param(10, id="quick"),
        # D1's CI figure: in the `slow` group, which .ci/run runs too
        pytest.param(KILLS, id="full", marks=pytest.mark.slow),
    ],
)
def test_sigkill_loop_loses_no_acknowledged_action(
    tmp_path: Path, kill_count: int
) -> None:
    rng = random.Random(1234 + kill_count)
    state_dir = tmp_path / "state"
    root: object = {}
    revision = 0
    kills = rounds = acked_total = 0
    while kills < kill_count:
        rounds += 1
        seed = rounds
        todo = actions(seed, PER_RUN)
        backend = "trio" if rounds % 2 else "asyncio"
        args = [
            sys.executable,
            str(CHILD),
            str(state_dir),
            backend,
            str(seed),
            str(PER_RUN),
        ]
        kill_after: int | None = None
        if rng.random() < 0.5:
            args += [rng.choice(POINTS), str(rng.randint(1, 4))]
        else:
            kill_after = rng.randrange(PER_RUN)
        # Every third round, its snapshots are rebuilt by a new process.
        env = {**os.environ, "STATEWARD_KILL_REPLAY": "1" if rounds % 3 == 0 else ""}
        child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
        assert child.stdout is not None
        acked = 0
        for line in child.stdout:
            # Read to the end, even after the kill: the child may have acked
            # more before the signal landed, and every ack must count.
            if line.split()[0] == "ack":
                acked += 1
                if acked - 1 == kill_after:
                    child.send_signal(signal.SIGKILL)
        child.stdout.close()
        code = child.wait(timeout=60)
        if code == -signal.SIGKILL:
            kills += 1
        else:
            assert code == 0, f"round {rounds}: the child failed with {code}"

        got_root, got_revision = _recover(state_dir)
        candidates = [acked] if acked == PER_RUN else [acked, acked + 1]
        models = [apply_all(root, revision, todo[:p]) for p in candidates]
        if not any(m.root == got_root and m.revision == got_revision for m in models):
            matches = [
                p
                for p in range(PER_RUN + 1)
                if apply_all(root, revision, todo[:p]).root == got_root
            ]
            pytest.fail(
                f"round {rounds}: {acked} acks, recovered revision {got_revision} "
                f"matches prefixes {matches} of the model, not {candidates}"
            )
        names = os.listdir(state_dir)
        assert not [n for n in names if n.endswith(".tmp")]
        assert len([n for n in names if n.startswith("snapshot-")]) <= KEEP + 1
        # Recovery is idempotent: a second pass finds the same state.
        assert _recover(state_dir) == (got_root, got_revision)
        root, revision = got_root, got_revision
        acked_total += acked

    # A clean run at the end: retention leaves exactly KEEP snapshots.
    done = subprocess.run(
        [sys.executable, str(CHILD), str(state_dir), "trio", "0", str(PER_RUN)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.splitlines()[-1] == "done"
    assert len([n for n in os.listdir(state_dir) if n.startswith("snapshot-")]) == KEEP
    print(f"D1: {kills} kills in {rounds} rounds, {acked_total} acknowledged, 0 lost")
