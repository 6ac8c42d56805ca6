"""A private redis-server per test, on a free loopback port: killed, restarted."""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import signal
import socket
import subprocess
import time
from typing import TYPE_CHECKING

import anyio
from needs import unavailable

if TYPE_CHECKING:
    from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listens(pid: int, port: int) -> bool:
    """Whether process *pid* holds the socket listening on loopback *port*.

    From Linux's /proc: the listening sockets' inodes (state 0A), and the
    sockets among the process's descriptors.
    """
    inodes = set()
    with open("/proc/net/tcp") as table:
        for line in table.read().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{inode}]")
    descriptors = f"/proc/{pid}/fd"
    for fd in os.listdir(descriptors):
        with contextlib.suppress(OSError):  # (closed meanwhile)
            if os.readlink(os.path.join(descriptors, fd)) in inodes:
                return True
    return False


class PortTakenError(RuntimeError):
    """Another process listens on the port chosen for a redis-server."""


class RedisProcess:
    """One redis-server that the test owns (nothing shared, nothing kept)."""

    def __init__(self, directory: Path, tls: dict[str, str] | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.directory = directory
        self.port = _free_port()
        self.tls = tls
        self.url = f"redis://127.0.0.1:{self.port}"
        if tls is not None:
            # TLS only: the plain port is off, clients must show a certificate.
            self.url = f"rediss://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        # A free port may be taken before the server binds it (by another
        # test process): then another one, with a new URL, before any use.
        for _ in range(4):
            try:
                self.start()
                return
            except PortTakenError:
                self.kill()
                self.port = _free_port()
                scheme = "redis" if tls is None else "rediss"
                self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.start()

    def start(self) -> None:
        ports = ["--port", str(self.port)]
        if self.tls is not None:
            ports = [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                self.tls["cert"],
                "--tls-key-file",
                self.tls["key"],
                "--tls-ca-cert-file",
                self.tls["ca"],
                "--tls-auth-clients",
                "yes",
            ]
        self.proc = subprocess.Popen(
            [
                self.binary,
                *ports,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        pid = f"process_id:{self.proc.pid}\r\n".encode()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:  # (it could not bind the port)
                raise PortTakenError(self.port)
            try:
                with socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.5
                ) as s:
                    if self.tls is not None:
                        # Listening (the handshake is the clients' test):
                        # ours, if the listening socket is our process's.
                        if not _listens(self.proc.pid, self.port):
                            raise PortTakenError(self.port)
                        return
                    s.sendall(b"INFO server\r\n")
                    answer = b""
                    while b"process_id:" not in answer or not answer.endswith(b"\r\n"):
                        more = s.recv(65536)
                        if not more:
                            break
                        answer += more
                    if pid in answer:
                        return
                    if b"process_id:" in answer:  # another test's server
                        raise PortTakenError(self.port)
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        """SIGKILL: everything in it is lost (no persistence)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        self.kill()

    def client_kill(self) -> None:
        """CLIENT KILL every normal connection (the owner's, the clients')."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"CLIENT KILL TYPE normal SKIPME yes\r\n")
            s.recv(64)


async def wait_for(predicate, timeout=10):
    """Poll what another process (Redis, the owner's loop) makes true.

    *predicate* may be async (a read of Redis, say).
    """
    with anyio.fail_after(timeout):
        while True:
            holds = predicate()
            if inspect.isawaitable(holds):
                holds = await holds
            if holds:
                return
            await anyio.sleep(0.01)  # (the state is in other tasks or processes)
