"""Serialise the tree in a forked child, so that the state actor never stops for it.

A snapshot must be exactly the tree at one revision, and serialising a large
tree takes seconds: done on the state actor's loop, every send waits that
long. ``os.fork()`` gives a child whose memory is the parent's at that
instant, copy-on-write (what Redis does for its snapshots): the child
serialises its frozen copy and streams the bytes back through a pipe, while
the parent goes on applying actions at once. The parent reads the pipe in a
worker thread and writes the file itself, through the same audited file
operations and in the same order as before (after the journal holds the
revision), so only the serialising moved.

The child touches no lock another thread might hold: it closes every fd it
inherited but its pipe and stdio (a parent that crashed mid-snapshot leaves
no child holding the state directory's lock), serialises, writes to its pipe
and leaves with ``os._exit``, never returning into the event loop. Where
``fork`` is missing, :func:`start` returns None and the caller serialises in
place.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import select
import signal
import sys
import threading
import time
import warnings
from typing import TYPE_CHECKING, Final

import anyio

from ._format import dumps_bytes

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..._json import JSON

__all__ = ["CHILD_TIMEOUT", "ForkedBody", "start"]

_CHUNK: Final = 1 << 20


CHILD_TIMEOUT: Final = 600.0
"""Seconds a child may take before :meth:`ForkedBody.collect` kills it: far
more than any tree that fits in memory needs (a million leaves: 1-2 s), so
only a child that hangs (a lock held by another thread at the fork, in a
library's at-fork handler) reaches it."""


last_pause: float = 0.001
"""Seconds the latest fork of this process stopped its caller (1 ms until
one is measured): it grows with the process's memory (its page tables),
whatever the tree. Readers of a tree weigh a copy against it."""

COPY_SECONDS: Final = 0.4e-6
"""What a copy of the tree costs per value (``copy_json``, measured)."""

COPY_AT_LEAST: Final = 2_000
"""Values always copied, however quick the latest fork was (tens of us)."""

copy_budget: int = max(COPY_AT_LEAST, int(last_pause / COPY_SECONDS))
"""The values whose copy takes as long as the latest fork did (at least
:data:`COPY_AT_LEAST`)."""


class ForkedBody:
    """A child serialising one tree; :meth:`read` collects its bytes.

    The child is a fork (:func:`start`) or a new process rebuilding a
    snapshot from the files (:func:`._compact.spawn`): either writes the
    body to its end of the pipe and exits with status 0.

    Exactly one of :meth:`read` and :meth:`abandon` closes the pipe and reaps
    the child, whichever comes first (from any thread): a child is never
    left blocked on a full pipe, holding the state directory's files, nor
    left a zombie. :meth:`kill` may end it at any time before it is reaped
    (never a process that reused its pid).
    """

    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self.fd = fd
        self._claim = threading.Lock()
        self._claimed = False
        self._reaped = False

    def _take(self) -> bool:
        with self._claim:
            taken, self._claimed = not self._claimed, True
            return taken

    def kill(self) -> None:
        """SIGKILL the child unless it was reaped already; any thread, idempotent.

        A read under way then sees the end of the pipe and reaps it.
        """
        with self._claim:
            if not self._reaped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)

    def _reap(self) -> int:
        # Wait for the exit without reaping and without the lock, then reap
        # under it: kill() never signals a pid that was freed (and maybe
        # reused meanwhile), and never waits for a child that hangs.
        if not hasattr(os, "waitid"):  # (macOS before Python 3.13)
            _, status = os.waitpid(self.pid, 0)  # a pid is not reused that soon
            self._reaped = True
            return status
        os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        with self._claim:
            _, status = os.waitpid(self.pid, 0)
            self._reaped = True
        return status

    def abandon(self) -> None:
        """Kill and reap the child unless :meth:`read` has begun; idempotent.

        For a read that will never run (its task was cancelled first). The
        child only serialises: killing it loses nothing.
        """
        if not self._take():
            return
        os.close(self.fd)
        self.kill()
        self._reap()  # at once: it was killed

    async def collect(
        self,
        limiter: anyio.CapacityLimiter | None = None,
        timeout: float | None = CHILD_TIMEOUT,
    ) -> bytes:
        """:meth:`read` in a worker thread (under *limiter*); cancellable.

        Cancelled after the thread began the read, the thread finishes it
        and reaps the child; cancelled before, the child is killed and
        reaped here.

        Raises:
            OSError: As :meth:`read`.
        """
        try:
            return await anyio.to_thread.run_sync(
                functools.partial(self.read, timeout),
                abandon_on_cancel=True,
                limiter=limiter,
            )
        finally:
            self.abandon()

    def read(self, timeout: float | None = None) -> bytes:
        """Read the body to its end and reap the child (blocking: a worker thread).

        A child that has not finished *timeout* seconds (None: no limit)
        after the read began is killed (and reaped) first.

        Raises:
            OSError: The child failed (its exit status), took too long, the
                pipe broke, or the body was abandoned.
        """
        if not self._take():
            raise OSError("the snapshot child was abandoned")
        deadline = None if timeout is None else time.monotonic() + timeout
        ready = select.poll()
        ready.register(self.fd, select.POLLIN)
        chunks: list[bytes] = []
        late = False
        try:
            while True:
                if deadline is not None:
                    left = max(0.0, deadline - time.monotonic())
                    if not ready.poll(left * 1000):
                        late = True
                        self.kill()
                        break
                chunk = os.read(self.fd, _CHUNK)
                if not chunk:
                    break
                chunks.append(chunk)
        except BaseException:
            self.kill()  # it may never end by itself: do not wait for it
            raise
        finally:
            os.close(self.fd)
            status = self._reap()
        if late:
            msg = f"the snapshot child {self.pid} took over {timeout} s: killed"
            raise OSError(msg)
        if status != 0:
            msg = f"the snapshot child {self.pid} failed (status {status})"
            raise OSError(msg)
        return b"".join(chunks)


def start(
    root: JSON, dumps: Callable[[JSON], bytes] | None = None
) -> ForkedBody | None:
    """Fork a child that serialises *root*; None where fork is not available.

    Call it between two batches of the state actor: the child sees the tree
    exactly as it is at this instant. *dumps* turns it into bytes (default:
    the snapshot format's compact JSON).
    """
    if not hasattr(os, "fork") or sys.platform == "win32":
        return None
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork in a threaded process: the child
        # below uses no lock that another thread may hold.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            began = time.perf_counter()
            pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            return None
    if pid == 0:  # pragma: no cover - runs in the child, which never returns
        _child(root, dumps or dumps_bytes, read_fd, write_fd)
    global last_pause, copy_budget
    last_pause = time.perf_counter() - began
    copy_budget = max(COPY_AT_LEAST, int(last_pause / COPY_SECONDS))
    os.close(write_fd)
    return ForkedBody(pid, read_fd)


def _child(  # pragma: no cover - runs in the child
    root: JSON, dumps: Callable[[JSON], bytes], read_fd: int, write_fd: int
) -> None:
    status = 1
    try:
        os.close(read_fd)
        _close_inherited(keep=write_fd)
        gc.disable()  # a collection would touch (and copy) every page
        with contextlib.suppress(ValueError):  # only the main thread may
            signal.set_wakeup_fd(-1)  # signals here are not the parent's loop's
        view = memoryview(dumps(root))
        while view:
            written = os.write(write_fd, view)
            view = view[written:]
        status = 0
    finally:
        os._exit(status)


def _close_inherited(keep: int) -> None:  # pragma: no cover - runs in the child
    """Close every fd the child inherited but stdio and *keep*.

    The child's copies would otherwise keep what they refer to alive after
    the parent is gone or has let go: the state directory's flock (a
    restart after a crash would find it locked until the child finished),
    a checkpoint saver's lock, the journal, the Redis connections. Closing
    the child's copy changes nothing for the parent, whose own fds still
    refer to the same open files.
    """
    top = max(os.sysconf("SC_OPEN_MAX"), keep + 1, 1 << 16)  # (-1: unknown)
    os.closerange(3, keep)
    os.closerange(max(3, keep + 1), top)
