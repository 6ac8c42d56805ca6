from __future__ import annotations

import pytest
from needs import unavailable

from .redislib import RedisProcess


@pytest.fixture
def redis(tmp_path_factory):
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


REFERENCE = "state-signals==1.0.1"


@pytest.fixture(scope="session")
def reference_python():
    """A Python with the reference state-signals library (it needs redis<4).

    $STATEWARD_SIGNALS_PYTHON when set (.ci/run prepares one), else a
    virtualenv made once under ~/.cache/stateward-tests.
    """
    import fcntl
    import os
    import subprocess
    import sys
    from pathlib import Path

    given = os.environ.get("STATEWARD_SIGNALS_PYTHON")
    if given:
        return given
    venv = Path.home() / ".cache" / "stateward-tests" / "state-signals-1.0.1"
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import state_signals"]
    venv.parent.mkdir(parents=True, exist_ok=True)
    # The test processes (pytest-xdist's workers) make it once: one at a
    # time, the others then find it made.
    with open(venv.parent / "state-signals.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = subprocess.run(check, capture_output=True) if python.exists() else None
        if ready is not None and ready.returncode == 0:
            return str(python)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            extra = ["setuptools"] if sys.version_info >= (3, 12) else []
            pip = [str(python), "-m", "pip", "install", "-q", REFERENCE, "redis<4"]
            subprocess.run(pip + extra, check=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            unavailable(f"cannot install {REFERENCE} (no network?): {exc}")
    return str(python)
