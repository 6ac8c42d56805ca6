"""Every example and the demo run for real, in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


@pytest.mark.parametrize("name", ["trio_quickstart.py", "asyncio_quickstart.py"])
def test_quickstart_runs(name):
    done = run(str(ROOT / "examples" / name))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    changes = [line for line in lines if line.startswith("job.sorted")]
    # 2 changes when worker 0 writes 0 onto 0 first (no change), else 3:
    # trio runs tasks in random order. Each change starts where the last ended.
    assert 2 <= len(changes) <= 3
    ends = [line.split(" -> ")[1] for line in changes]
    starts = [line.split()[1] for line in changes]
    assert starts == ["0", *ends[:-1]]
    assert lines[len(changes)] == f"final: {{'bins': 10, 'sorted': {ends[-1]}}}"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_demo_runs_and_shows_every_outcome(backend):
    done = run("-m", "stateward.cli", "demo", "--backend", backend)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"demo on {backend}" in out
    assert "SUB_FAILED (checker: RuntimeError: run-2 has no test machine)" in out
    assert "ALL_SUBS_SUCCESS" in out
    assert "summary written in one transaction: ALL_SUBS_SUCCESS" in out
    assert "final state: {'run-1': {'phase': 'done'}" in out
    assert "dashboard: missed" in out  # the slow subscriber dropped and resynced


def test_demo_rejects_bad_options():
    done = run("-m", "stateward.cli", "demo", "--runs", "0")
    assert done.returncode == 2
    assert "--runs must be between 1 and 50" in done.stderr


# Each example prints the same lines on every run (and on both backends).
EXAMPLE_OUTPUTS = {
    "store_quickstart.py": [
        "set: True",
        "set into a scalar: False",
        "missing: 0",
        "state: {'job': {'bins': 12, 'sorted': 0}}",
        'file: {"job":{"bins":12,"sorted":0}}',
        "events: [('job.sorted', 1), ('job.bins', 12), ('job.sorted', 0)]",
    ],
    "checkpoints.py": [
        "saved step-1 at revision 1",
        "saved step-2 at revision 2",
        "saved step-3 at revision 3",
        "kept: ['step-2', 'step-3']",
        "restored: {'step': 2} [1.0, 0.5]",
    ],
    "feed.py": [
        "rev 3: jobs.j2.status = queued",
        "rev 4: jobs.j3.status = queued",
        "rev 5: jobs.j4.status = queued",
        "rev 6: jobs.j0.status = done",
        "at revision 1: {'jobs': {'j0': {'status': 'queued'}}}",
        "compacted: resume from >= 7 after re-reading",
    ],
    "derived.py": [
        "rev 3: cart.items = [{'price': 10}, {'price': 5}]",
        "rev 3: cart.total = 15",
        "rev 3: cart.gross = 18.0",
        "rev 4: cart.items = [{'price': '?'}]",
        'errors: ("cart.total: TypeError: unsupported operand type(s) for +: '
        "'int' and 'str'\",)",
        "cart: {'items': [{'price': '?'}], 'total': 15, 'gross': 18.0}",
    ],
}


@pytest.mark.parametrize("name", sorted(EXAMPLE_OUTPUTS))
def test_example_prints_what_it_should(name):
    done = run(str(ROOT / "examples" / name))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == EXAMPLE_OUTPUTS[name]


MIGRATING = {
    "from_roz_remembers.py": [
        "True",
        "3",
        "0",
        "changed: [('job.sorted', 3)]",
        '{"job":{"bins":10,"sorted":3}}',
    ],
    "from_restate.py": [
        "users changed at users.1",
        "users changed at users.2",
        "{'name': 'Alice', 'role': 'admin'}",
        "['Alice']",
    ],
    "from_atomic_store.py": [
        "written inside the block: False",
        "{'state': 'done', 'thought': 'I would not eat green eggs and ham.'}",
    ],
    "from_pamiq_core.py": [
        "saved step 3 as checkpoint 1",
        "saved step 6 as checkpoint 2",
        "saved step 9 as checkpoint 3",
        "kept: [2, 3]",
        "restored weights 90 at step 9",
    ],
}


@pytest.mark.parametrize("name", sorted(MIGRATING))
def test_migration_guide_programs_run(name, tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "migrating" / name)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == MIGRATING[name]


def test_bare_stateward_shows_help():
    done = run("-m", "stateward.cli")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: stateward")
    for command in ("demo", "inspect", "serve", "get", "set", "watch", "acl"):
        assert command in done.stdout


def test_inspect_into_a_closed_pipe_ends_quietly(tmp_path):
    from stateward import Store

    store = Store(state_dir=tmp_path / "s", durability="none")
    with store, store.transaction():  # a tree bigger than a pipe's buffer
        for i in range(10_000):
            store.set(f"k.{i}", i)
    cli = subprocess.Popen(
        [sys.executable, "-m", "stateward.cli", "inspect", str(tmp_path / "s")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert cli.stdout is not None
    assert cli.stderr is not None
    cli.stdout.readline()
    cli.stdout.close()  # as `| head -1` does
    err = cli.stderr.read().decode()
    cli.stderr.close()
    assert cli.wait(timeout=60) == 141  # SIGPIPE's status, without a traceback
    assert "Traceback" not in err


USES = ROOT / "examples" / "uses"


def _run_use(name, *args, cwd=None, check=True):
    done = subprocess.run(
        [sys.executable, str(USES / name), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_the_card_sorter_loses_no_card_across_threads():
    lines = _run_use("card_sorter.py").stdout.splitlines()
    assert lines == [
        "hopper: 0 bins: {'A': 100, 'B': 100, 'C': 100, 'D': 100}",
        "cards accounted for: True",
        "bins that reached 50: ['bins.A', 'bins.B', 'bins.C', 'bins.D']",
    ]


def test_runs_json_appends_and_keeps_every_run(tmp_path):
    path = str(tmp_path / "runs.json")
    _run_use("runs_json.py", path)
    lines = _run_use("runs_json.py", path).stdout.splitlines()
    assert lines == [
        "run 2: baseline",
        "run 3: tuned",
        "runs in the file: ['baseline', 'tuned', 'baseline', 'tuned']",
    ]


def test_the_training_loop_resumes_after_a_kill_without_redoing_a_step(tmp_path):
    killed = _run_use(
        "training_loop.py", str(tmp_path), "--crash-at", "13", check=False
    )
    assert killed.returncode == -9  # SIGKILL, as a power cut would
    lines = _run_use("training_loop.py", str(tmp_path)).stdout.splitlines()
    assert lines == [
        "resumed at step 10 (step-0010)",
        "done: step 20, weight 10.0, buffer 20",
    ]


def test_the_phases_wait_for_every_worker():
    lines = _run_use("phases.py").stdout.splitlines()
    assert lines == [
        "fetch: every worker done (attempt 1)",
        "build: every worker done (attempt 1)",
        "test: SUB_FAILED ['mac: mac could not test (first try)'][]",
        "test: every worker done (attempt 2)",
        "publish: every worker done (attempt 1)",
        "job finished at revision 5",
    ]


def test_the_web_app_reads_and_writes_the_state():
    lines = _run_use("web_app.py").stdout.splitlines()
    assert lines[0] == "{'revision': 1, 'acks': 'ALL_SUBS_SUCCESS', 'messages': []}"
    assert lines[2] == (
        "{'path': 'machines.m1', 'value': {'status': 'busy'}, 'revision': 2}"
    )
    assert "secrets are not for the web" in lines[3]
    assert lines[4:6] == ["422", "422"]
    assert lines[6] == "audit: ['r1 machines.m1', 'r2 machines.m1.status']"


def test_a_large_state_keeps_every_write_through_its_snapshots():
    # 60,000 leaves: a first snapshot over 1 MiB, so "auto" rebuilds.
    done = run(str(ROOT / "examples" / "large_state.py"), "60000")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1::2] == [
        "auto: after a restart, every write is there: True",
        "fork: after a restart, every write is there: True",
    ]
    for child, line in zip(["auto", "fork"], lines[::2], strict=True):
        assert line.startswith(f"{child}: 10,000 writes to 60,000 leaves, ")
