"""The ``stateward`` command: ``stateward demo [--backend asyncio|trio]``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

import anyio

from . import __version__
from ._cli_inspect import inspect_command
from ._errors import StatewardError
from .actors.state import open_state
from .actors.subscriber import Overflow
from .messages.acks import RAS, ResultCode
from .messages.actions import Merge, Set, Transaction
from .messages.events import Resync, StateChanged

if TYPE_CHECKING:
    from .actors.state import StateHandle
    from .messages.acks import AckReport

__all__ = ["main"]

PHASES = ("queued", "building", "testing", "reporting", "done")


def _say(text: str) -> None:
    print(text, flush=True)


SUBSCRIBERS = ("logger", "dashboard", "checker")


def _columns(report: AckReport) -> str:
    """Each subscriber's answer, in a fixed order: ok, FAILED or -."""
    codes = {a.subscriber: a.ras for a in report.acks}
    cells = []
    for name in SUBSCRIBERS:
        code = codes.get(name)
        cells.append("-" if code is None else "ok" if code == RAS.SUCCESS else "FAILED")
    return "".join(f"{cell:<11}" for cell in cells)


class _InOrder:
    """Print the lines of revisions in revision order.

    Acks settle in any order: each line waits for the ones before it.
    """

    def __init__(self, first: int) -> None:
        self.next = first
        self.waiting: dict[int, str] = {}

    def add(self, revision: int, line: str) -> None:
        self.waiting[revision] = line
        while self.next in self.waiting:
            _say(self.waiting.pop(self.next))
            self.next += 1


async def demo(backend: str, *, runs: int = 3, pace: float = 0.1) -> int:
    """Run the orchestrator scenario and print what happens; return an exit code."""
    _say(
        f"stateward {__version__} demo on {backend}: {runs} runs move through "
        f"{' -> '.join(PHASES)}"
    )
    _say(
        "subscriber actors: logger (every change), dashboard (slow at first: it "
        "drops updates, then resyncs), checker (fails run-2 in 'testing')\n"
    )
    _say(
        "One line per action, in revision order: what each subscriber answered "
        "(ok, FAILED, or - when it\ndid not answer in time: the dashboard drops "
        "updates when it falls behind), then the AckReport.\n"
    )
    _say(f"  {'rev':>3}  {'run':<6} {'-> phase':<12} " + "".join(
        f"{name:<11}" for name in SUBSCRIBERS) + "result")  # fmt: skip
    initial = {"runs": {f"run-{i}": {"phase": "queued"} for i in range(1, runs + 1)}}
    failures = 0
    async with open_state(initial) as state:
        await _subscribe_all(state)
        lines = _InOrder(state.revision + 1)

        async def worker(index: int) -> None:
            nonlocal failures
            run = f"run-{index}"
            await anyio.sleep(pace * index / (runs + 1))  # staggered starts
            for phase in PHASES[1:]:
                await anyio.sleep(pace)
                receipt = await state.send(
                    Set(f"runs.{run}.phase", phase, source=f"worker/{run}")
                )
                report = await receipt.acks(timeout=pace * 5)
                verdict = report.result.name
                if report.result is ResultCode.SUB_FAILED:
                    failures += 1
                    why = "; ".join(
                        f"{a.subscriber}: {a.message}" for a in report.failed
                    )
                    verdict += f" ({why})"
                lines.add(
                    receipt.revision,
                    f"  {receipt.revision:>3}  {run:<6} -> {phase:<9} "
                    f"{_columns(report)}{verdict}",
                )

        async with anyio.create_task_group() as tg:
            for i in range(1, runs + 1):
                tg.start_soon(worker, i)

        receipt = await state.send(
            Transaction(
                [
                    Merge("summary", {"runs": runs, "failed_checks": failures}),
                    Set("summary.finished", True),
                ],
                source="orchestrator",
            )
        )
        report = await receipt.acks(timeout=1)
        _say(
            f"\n  {receipt.revision:>3}  summary written in one transaction: "
            f"{report.result.name}"
        )
        _say(f"\nfinal state: {await state.get('runs')}")
        _say(f"summary: {await state.get('summary')}")
        _say("stopping: subscribers finish what they hold, then the actor ends")
    # After a graceful stop the counters are final.
    stats = state.statistics()
    _say(
        f"\nstate actor: revision {stats.revision}, applied {stats.applied}, "
        f"rejected {stats.rejected}"
    )
    for name, sub in state.subscriber_statistics().items():
        _say(
            f"  {name:<9} delivered {sub.delivered:>2}  dropped {sub.dropped:>2}  "
            f"resyncs {sub.resyncs}  acks ok {sub.acks_ok:>2}  "
            f"failed {sub.acks_failed}  peak mailbox {sub.peak}/{sub.mailbox_size}"
        )
    return 0


async def _subscribe_all(state: StateHandle) -> None:
    async def logger(event: StateChanged | Resync) -> int:
        return RAS.SUCCESS

    slow = {"left": 2}

    async def dashboard(event: StateChanged | Resync) -> int:
        if isinstance(event, Resync):
            runs = await state.get("runs", {})
            count = len(runs) if isinstance(runs, dict) else 0
            _say(
                f"  dashboard: missed {event.dropped} update(s) up to rev "
                f"{event.last_revision}; re-read {count} runs"
            )
            return RAS.SUCCESS
        slow["left"] -= 1  # a screen that is slow at first, then keeps up
        await anyio.sleep(0.35 if slow["left"] >= 0 else 0.01)
        return RAS.SUCCESS

    def checker(event: StateChanged | Resync) -> int:
        if (
            isinstance(event, StateChanged)
            and event.path == "runs.run-2.phase"
            and event.new_value == "testing"
        ):
            msg = "run-2 has no test machine"
            raise RuntimeError(msg)
        return RAS.SUCCESS

    await state.subscribe("runs.*.phase", logger, name="logger")
    await state.subscribe(
        "runs", dashboard, name="dashboard", overflow=Overflow.DROP, mailbox_size=2
    )
    await state.subscribe("runs.**", checker, name="checker")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``stateward`` command.

    A closed pipe (``stateward inspect DIR | head``) ends it quietly.
    """
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Python would print a traceback at exit while flushing stdout:
        # point it at /dev/null and leave with the usual SIGPIPE status.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="stateward",
        description="An actor-based concurrent state service.",
        epilog="examples:\n"
        "  stateward demo                       three runs and their AckReports\n"
        "  stateward inspect ./state --summary  what a state directory holds\n"
        "  stateward serve --state-dir ./state --redis URL --name jobs\n"
        "  stateward COMMAND --help             each command's options, examples\n"
        "\n"
        "exit codes: 0 done (serve and watch: also when stopped with Ctrl-C),\n"
        "1 failed (the message says why), 2 bad usage, 130 interrupted,\n"
        "141 output closed (a pipe such as | head)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command")
    run_demo = commands.add_parser(
        "demo",
        help="run the orchestrator demo",
        description="Orchestrate runs through queued -> building -> testing -> "
        "reporting -> done with three subscribers, and print every AckReport.",
        epilog="examples:\n  stateward demo\n  stateward demo --backend trio --runs 5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_demo.add_argument(
        "--backend",
        choices=["asyncio", "trio"],
        default="asyncio",
        help="event loop to run on (default: asyncio)",
    )
    run_demo.add_argument(
        "--runs", type=int, default=3, help="runs to orchestrate, 1-50 (default: 3)"
    )
    run_inspect = commands.add_parser(
        "inspect",
        help="show a state directory (read-only) and its tree",
        description="Show the files of a state directory and rebuild its tree, "
        "read-only (safe beside a running service).",
        epilog="examples:\n"
        "  stateward inspect ./state                  files, then the whole tree\n"
        "  stateward inspect ./state jobs.build       one subtree\n"
        "  stateward inspect ./state --summary        types and sizes, not values\n"
        "  stateward inspect ./state --revision 40    the tree as it was then\n"
        "  stateward inspect ./state --json | jq .value\n"
        "  stateward inspect ./state --redact 'users.*.password'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_inspect.add_argument("directory", help="the state_dir of a persisted state")
    run_inspect.add_argument(
        "path", nargs="?", default="", help="show only this path (e.g. jobs.build)"
    )
    run_inspect.add_argument(
        "--summary",
        action="store_true",
        help="types, child and leaf counts and JSON sizes, two levels deep",
    )
    run_inspect.add_argument(
        "--json", action="store_true", help="one JSON object, for scripts"
    )
    run_inspect.add_argument(
        "--revision", type=int, default=None, help="rebuild the tree at this revision"
    )
    run_inspect.add_argument(
        "--redact",
        action="append",
        metavar="PATTERN",
        help="print values under PATTERN (e.g. 'users.*.password') as <redacted>; "
        "may be repeated",
    )
    run_serve = commands.add_parser(
        "serve",
        help="serve a persisted state over Redis (the owner)",
        epilog="examples:\n"
        "  stateward serve --state-dir ./state --redis redis://127.0.0.1:6379 "
        "--name jobs\n"
        "  stateward serve --state-dir ./state --redis URL --name lab --signals "
        "--export 'jobs.**'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_serve.add_argument("--state-dir", required=True, help="the state directory")
    run_serve.add_argument("--redis", required=True, metavar="URL", help="redis://...")
    run_serve.add_argument("--name", required=True, help="the state's name on Redis")
    run_serve.add_argument(
        "--durability",
        choices=["fsync", "flush", "none"],
        default="fsync",
        help="what a send waits for (default: fsync)",
    )
    run_serve.add_argument(
        "--signals",
        action="store_true",
        help="bridge state-signals too: record every exporter's signals "
        "under 'signals.<process>'",
    )
    run_serve.add_argument(
        "--respond-as",
        action="append",
        default=[],
        metavar="SUBSCRIBER",
        help="with --signals: answer state-signals exporters as this stateward "
        "subscriber (a remote one, by name); may be repeated",
    )
    run_serve.add_argument(
        "--export",
        default=None,
        metavar="PATTERN",
        help="with --signals: publish the changes at PATTERN as signals; "
        "state-signals responders become subscribers",
    )
    run_get = commands.add_parser(
        "get",
        help="read a path of a served state",
        epilog="example:\n  stateward get redis://127.0.0.1:6379 jobs jobs.build",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_set = commands.add_parser(
        "set",
        help="write a JSON value into a served state; print revision and acks",
        epilog="examples:\n"
        "  stateward set redis://127.0.0.1:6379 jobs jobs.build '\"done\"'\n"
        "  stateward set redis://127.0.0.1:6379 jobs jobs.limits '{\"cpu\": 4}'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for remote in (run_get, run_set):
        remote.add_argument("url", help="redis://[user:password@]host:port")
        remote.add_argument("name", help="the state's name on Redis")
        remote.add_argument("path", help="a dot or slash path ('' for the root)")
        if remote is run_set:
            remote.add_argument("value", help="the JSON value to write")
        remote.add_argument(
            "--timeout", type=float, default=10.0, help="seconds (default: 10)"
        )
    run_watch = commands.add_parser(
        "watch",
        help="print each change of a served state, one JSON line each",
        epilog="examples:\n"
        "  stateward watch redis://127.0.0.1:6379 jobs 'jobs.**'\n"
        "  stateward watch redis://127.0.0.1:6379 jobs '**' --from-revision 100",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_watch.add_argument("url", help="redis://[user:password@]host:port")
    run_watch.add_argument("name", help="the state's name on Redis")
    run_watch.add_argument("pattern", help="e.g. 'jobs.**' ('**' for everything)")
    run_watch.add_argument(
        "--from-revision", type=int, default=None, help="replay the changes after R"
    )
    run_acl = commands.add_parser(
        "acl",
        help="print least-privilege Redis ACL rules for a served state",
        epilog="examples:\n"
        "  stateward acl --name jobs --client worker-1\n"
        "  stateward acl --name lab --signals",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_acl.add_argument("--name", required=True, help="the state's name on Redis")
    run_acl.add_argument("--client", default=None, help="also a client's rules")
    run_acl.add_argument(
        "--signals",
        action="store_true",
        help="also the rules of the state-signals channels (owner, exporters, "
        "responders)",
    )
    args = parser.parse_args(argv)
    if args.command is None:  # bare `stateward`: say what it can do
        parser.print_help()
        return 0
    if args.command in ("serve", "get", "set", "watch", "acl"):
        return _remote(args)
    if args.command == "inspect":
        return inspect_command(
            args.directory,
            args.revision,
            args.redact,
            path=args.path,
            summary=args.summary,
            as_json=args.json,
        )
    if args.command == "demo":
        if args.backend == "trio":
            try:
                import trio  # noqa: F401
            except ImportError:
                print(
                    "stateward demo --backend trio needs trio: "
                    "pip install 'stateward[trio]'",
                    file=sys.stderr,
                )
                return 2
        if not 1 <= args.runs <= 50:
            print("--runs must be between 1 and 50", file=sys.stderr)
            return 2
        try:
            return anyio.run(
                lambda: demo(args.backend, runs=args.runs), backend=args.backend
            )
        except StatewardError as exc:
            print(f"stateward demo failed: {exc}", file=sys.stderr)
            return 1
    return 2  # pragma: no cover - argparse requires a command


def _remote(args: argparse.Namespace) -> int:
    try:
        from .remote import _cli
    except ImportError:
        print(
            f"stateward {args.command} needs the redis extra: "
            "pip install 'stateward[redis]'",
            file=sys.stderr,
        )
        return 2
    if args.command == "serve":
        if (args.respond_as or args.export) and not args.signals:
            print("--respond-as and --export need --signals", file=sys.stderr)
            return 2
        signals = None
        if args.signals:
            signals = {"respond_as": tuple(args.respond_as), "export": args.export}
        return _cli.serve_command(
            args.state_dir, args.redis, args.name, args.durability, signals
        )
    if args.command == "get":
        return _cli.get_command(args.url, args.name, args.path, args.timeout)
    if args.command == "watch":
        return _cli.watch_command(args.url, args.name, args.pattern, args.from_revision)
    if args.command == "acl":
        return _cli.acl_command(args.name, args.client, signals=args.signals)
    return _cli.set_command(args.url, args.name, args.path, args.value, args.timeout)


if __name__ == "__main__":
    raise SystemExit(main())
