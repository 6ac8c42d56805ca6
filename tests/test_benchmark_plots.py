"""The sweep benchmark runs, prints its ratios and draws its charts."""

from __future__ import annotations

import pytest

from benchmarks import sweep
from benchmarks.__main__ import main


def test_sweep_prints_every_series_and_draws_four_charts(tmp_path, capsys):
    assert main(["sweep", "--quick", "-n", "200", "--plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for backend in ("asyncio", "trio"):
        for series in ("(1) 100,000 leaves", "(2) 16 subscribers", "(3) durable"):
            assert f"| {backend} | {series}" in out
        assert f"| {backend} | (4) 100 workers, durable |" in out
    charts = sorted(p.name for p in tmp_path.iterdir())
    assert charts == [
        "durable-vs-memory.png",
        "latency-percentiles.png",
        "throughput-by-subscribers.png",
        "throughput-by-tree-size.png",
    ]
    for chart in tmp_path.iterdir():
        data = chart.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(data) > 5_000  # drawn, not an empty canvas


def test_plot_is_refused_for_suites_without_series(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["core", "--plot", "x"])
    assert exit_.value.code == 2
    assert "use 'sweep --plot DIR'" in capsys.readouterr().err


def test_percentile_is_the_nearest_rank():
    samples = [float(i) for i in range(1, 101)]
    assert sweep.percentile(samples, 50) == 50.0
    assert sweep.percentile(samples, 99.9) == 100.0
    assert sweep.percentile([3.0], 90) == 3.0
