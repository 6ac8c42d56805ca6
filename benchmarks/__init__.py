"""Benchmarks: ``python -m benchmarks core``. Ratios against same-run baselines."""
