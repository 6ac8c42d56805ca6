"""The progress line that ``stateward serve`` and ``stateward inspect`` print."""

from __future__ import annotations

import sys

from stateward import _cli_progress
from stateward.actors.persistence import RecoveryProgress


def test_progress_is_shown_on_a_terminal_only(monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert _cli_progress.progress_printer("recovering d") is None  # a pipe or a log
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    clock = iter([10.0, 10.2, 10.3])  # a deterministic clock
    monkeypatch.setattr(_cli_progress.time, "monotonic", lambda: next(clock))
    show = _cli_progress.progress_printer("recovering d")
    assert show is not None
    show(RecoveryProgress(50, 100, 50_000, 50_000))
    show(RecoveryProgress(60, 100, 60_000, 60_000))  # within 0.5 s: skipped
    show(RecoveryProgress(100, 100, 120_000, 120_000))  # the end: always shown
    err = capsys.readouterr().err
    assert "recovering d:  50% of the journal, 50,000 records" in err
    assert "60,000" not in err
    assert err.endswith("100% of the journal, 120,000 records, revision 120000\n")
    show(RecoveryProgress(0, 0, 0, 7))  # nothing to replay: no line at all
    assert capsys.readouterr().err == ""
