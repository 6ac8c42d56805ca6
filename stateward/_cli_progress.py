"""A long replay's progress on a terminal, for the commands that run one."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from .actors.persistence import RecoveryProgress

__all__ = ["progress_printer"]


def progress_printer(doing: str) -> Callable[[RecoveryProgress], None] | None:
    """Print a replay's progress on stderr twice a second, on a terminal only.

    *doing* starts each line ("recovering /srv/state"). Returns None when
    stderr is not a terminal (a pipe or a log gets nothing). The printer
    shows nothing until a record has been replayed; then the final report
    (all bytes done) is always printed and ends the line. It may be called
    from any one thread at a time (recovery calls it from its worker
    thread).
    """
    if not sys.stderr.isatty():
        return None
    last = [0.0]

    def show(progress: RecoveryProgress) -> None:
        if not progress.records:
            return  # nothing replayed (yet): no line to show
        now = time.monotonic()
        done = progress.bytes_done == progress.bytes_total
        if now - last[0] < 0.5 and not done:
            return
        last[0] = now
        share = (
            progress.bytes_done / progress.bytes_total if progress.bytes_total else 1
        )
        print(
            f"\r{doing}: {share:4.0%} of the journal, "
            f"{progress.records:,} records, revision {progress.revision}",
            end="\n" if done else "",
            file=sys.stderr,
            flush=True,
        )

    return show
