"""The remote commands and the two-process example, run for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _stateward(*args, timeout=60, env=None):
    return subprocess.run(
        [sys.executable, "-m", "stateward.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
        env=env,
    )


def _serve(redis, tmp_path, *extra):
    """`stateward serve` in a process of its own (the caller stops it)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stateward.cli",
            "serve",
            "--state-dir",
            str(tmp_path / "state"),
            "--redis",
            redis.url,
            "--name",
            "jobs",
            *extra,
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def test_serve_set_get(redis, tmp_path):
    owner = _serve(redis, tmp_path)
    try:
        assert owner.stdout is not None
        assert "serving" in owner.stdout.readline()
        done = _stateward("set", redis.url, "jobs", "job.phase", '"building"')
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("revision 1 (changed: True)")
        assert "ALL_SUBS_SUCCESS" in done.stdout
        done = _stateward("get", redis.url, "jobs", "job")
        assert done.returncode == 0, done.stderr
        assert (
            done.stdout.strip().replace(" ", "").replace("\n", "")
            == '{"phase":"building"}'
        )
        done = _stateward("set", redis.url, "jobs", "job.phase.x", "1")
        assert done.returncode == 1
        assert "cannot go below 'job.phase'" in done.stderr
        done = _stateward("set", redis.url, "jobs", "job", "{nope")
        assert done.returncode == 2
    finally:
        owner.terminate()
        owner.wait(timeout=10)
        owner.stdout.close()


def test_unreachable_redis_is_a_clear_error():
    done = _stateward("get", "redis://127.0.0.1:1", "jobs", "a", timeout=60)
    assert done.returncode == 1
    assert "Redis cannot be reached" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_remote_example_runs(redis, tmp_path):
    env = {**os.environ, "REDIS_URL": redis.url}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "remote_worker.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "owner: ready"
    assert "jobs.build = 'done' at revision 1: ALL_SUBS_SUCCESS []" in lines[1]
    assert (
        "jobs.test = 'failed' at revision 2: SUB_FAILED ['jobs.test failed']"
        in lines[2]
    )
    assert lines[3] == "worker: state on the owner: {'build': 'done', 'test': 'failed'}"


def test_the_state_signals_migration_program_runs(redis, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "migrating" / "from_state_signals.py"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "REDIS_URL": redis.url},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "benchmark-start 0 ['']",
        "crash 1 ['node down']",
    ]


def test_acl_prints_least_privilege_rules():
    done = _stateward("acl", "--name", "jobs", "--client", "w1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "# owner"
    assert lines[1].startswith("ACL SETUSER sw-owner-jobs on ><password> resetkeys")
    assert "~sw:{jobs}:*" in lines[1]
    assert lines[2] == "# client-w1"
    assert "~sw:{jobs}:reply:w1" in lines[3]


def test_watch_prints_changes_as_json_lines(redis, tmp_path):
    owner = _serve(redis, tmp_path)
    watcher = None
    try:
        assert "serving" in owner.stdout.readline()
        assert (
            _stateward("set", redis.url, "jobs", "job.phase", '"queued"').returncode
            == 0
        )
        watcher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stateward.cli",
                "watch",
                redis.url,
                "jobs",
                "job",
                "--from-revision",
                "0",
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        first = watcher.stdout.readline()  # replayed from revision 0
        assert '"revision": 1' in first
        assert '"value": "queued"' in first
        assert (
            _stateward("set", redis.url, "jobs", "job.phase", '"done"').returncode == 0
        )
        assert '"value": "done"' in watcher.stdout.readline()  # live
    finally:
        for proc in (watcher, owner):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=10)
                proc.stdout.close()


def test_serve_with_the_signals_bridge(redis, tmp_path):
    import anyio

    from stateward.signals import open_exporter, open_responder

    owner = _serve(redis, tmp_path, "--signals", "--export", "jobs.**")
    try:
        assert owner.stdout is not None
        assert "serving" in owner.stdout.readline()
        assert "state-signals bridge" in owner.stdout.readline()

        async def exporter_then_responder():
            async with open_exporter(redis.url, "fio") as exporter:
                await exporter.initialize(["go"])
                assert await exporter.publish_signal("go", sample=4) == (0, {})
            async with open_responder(redis.url, "dash") as responder:
                async for signal in responder.listen():
                    if signal.event == "initialization":
                        await responder.srespond(signal)
                        break
                # Its answers reach a `stateward set` through the owner.
                done = None

                async def set_it():
                    nonlocal done
                    done = await anyio.to_thread.run_sync(
                        lambda: _stateward("set", redis.url, "jobs", "jobs.a", '"x"')
                    )

                async with anyio.create_task_group() as tg:
                    tg.start_soon(set_it)
                    async for signal in responder.listen():
                        if signal.event == "x":
                            await responder.srespond(signal, 1)
                            break
            return done

        done = anyio.run(exporter_then_responder)
        assert done.returncode == 0, done.stderr
        assert "ALL_SUBS_SUCCESS" in done.stdout
        assert "dash-" in done.stdout
        got = _stateward("get", redis.url, "jobs", "signals.fio")
        assert '"sample_no": 4' in got.stdout
        refused = _stateward(
            "serve",
            "--state-dir",
            "x",
            "--redis",
            redis.url,
            "--name",
            "j",
            "--export",
            "a",
        )
        assert refused.returncode == 2
        assert "need --signals" in refused.stderr
    finally:
        owner.terminate()
        owner.wait(timeout=10)
        owner.stdout.close()


def test_the_signals_bridge_example_runs_a_real_exporter(redis, reference_python):
    # The example runs the reference library in this Python: its packages
    # (state_signals, redis<4: pure Python) come from the reference venv.
    site = subprocess.run(
        [
            reference_python,
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "signals_bridge.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "REDIS_URL": redis.url, "PYTHONPATH": site},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "publish_signal('benchmark-start') -> ALL_SUBS_SUCCESS {}" in lines
    stop = next(line for line in lines if "'benchmark-stop'" in line)
    assert "SUB_FAILED" in stop
    assert "the disk filled up during the run" in stop
    assert lines[-1] == "state: shutdown"
    assert "revision 2: signals.fio = benchmark-start" in lines
