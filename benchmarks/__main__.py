"""Run a suite: ``python -m benchmarks SUITE [--backend B] [--quick]``.

SUITE is core, persistence, reactive, remote, signals, scale, store or sweep;
``sweep --plot DIR`` also draws its series as PNG charts in DIR.
"""

from __future__ import annotations

import argparse
import sys

import anyio

from . import core, persistence, reactive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument(
        "suite",
        choices=[
            "core",
            "persistence",
            "reactive",
            "remote",
            "signals",
            "scale",
            "sweep",
            "store",
        ],
    )
    parser.add_argument(
        "--backend", choices=["asyncio", "trio", "both"], default="both"
    )
    parser.add_argument("-n", type=int, default=20_000, help="actions per figure")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per figure (best kept)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="n=2000, repeat=1 (smoke run)"
    )
    parser.add_argument(
        "--plot",
        metavar="DIR",
        help="sweep only: write PNG charts into DIR (needs the plot extra)",
    )
    args = parser.parse_args(argv)
    if args.plot is not None and args.suite != "sweep":
        parser.error("--plot draws the sweep suite's series: use 'sweep --plot DIR'")
    if args.quick:
        args.n, args.repeat = 2_000, 1
    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]
    if args.suite != "core":
        # The other suites yield their rows one figure at a time.
        if args.suite == "sweep":
            from . import sweep

            title = f"sweep: n={args.n}, ratios against same-run baselines"
            rows = sweep.run(args.n, backends, args.quick, args.plot)
        elif args.suite == "store":
            from . import store

            title = f"Store benchmark: n={args.n}, best of {args.repeat}"
            rows = store.run(args.n, args.repeat, backends, args.quick)
        elif args.suite == "scale":
            from . import scale

            title = "scale benchmark: a large persisted state and its snapshots"
            rows = scale.run(backends, args.quick)
        elif args.suite in ("signals", "remote"):
            # Both need the redis extra.
            from . import remote, signals

            title = f"{args.suite} benchmark: medians of single round trips"
            module = signals if args.suite == "signals" else remote
            rows = module.run(args.n, backends, args.quick)
        elif args.suite == "reactive":
            title = f"reactive benchmark: n={args.n}, best of {args.repeat}"
            rows = reactive.run(args.n, args.repeat, backends)
        else:
            title = f"persistence benchmark: n={args.n}, best of {args.repeat}"
            rows = persistence.run(args.n, args.repeat, backends, args.quick)
        print(f"stateward {title}")
        print("| backend | figure | value |")
        print("|---|---|---|")
        for row in rows:
            print(row, flush=True)
        return 0
    print(f"stateward core benchmark: n={args.n}, best of {args.repeat}")
    print("| backend | figure | value |")
    print("|---|---|---|")
    misses = 0
    for backend in backends:
        out = anyio.run(core.bench, args.n, args.repeat, backend=backend)
        for row in core.report(backend, out):
            print(row)
            misses += "MISSES" in row
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
