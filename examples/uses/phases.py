"""A worker pool that waits for every worker's acknowledgement before the next phase.

The orchestrator moves a job through its phases; each worker is a
subscriber that does its part of a phase and answers with a RAS code. The
next phase starts only when every worker answered success; a failure is
retried once, and a worker that does not answer in time is named.

Run: python examples/uses/phases.py
"""

from __future__ import annotations

import anyio

from stateward import RAS, Resync, Set, open_state

PHASES = ("fetch", "build", "test", "publish")


async def main() -> None:
    attempts: dict[str, int] = {}

    def worker(name: str, flaky_in: str | None = None):
        async def handle(event):
            if isinstance(event, Resync):
                return RAS.SUCCESS
            phase = event.new_value["phase"]
            await anyio.sleep(0.01)  # the work
            key = f"{name}:{phase}"
            attempts[key] = attempts.get(key, 0) + 1
            if phase == flaky_in and attempts[key] == 1:
                return RAS.FAILURE, f"{name} could not {phase} (first try)"
            return RAS.SUCCESS

        return handle

    async with open_state({"job": {}}) as state:
        for name, flaky in (("linux", None), ("mac", "test"), ("windows", None)):
            await state.subscribe("job", worker(name, flaky), name=name)
        for phase in PHASES:
            for attempt in (1, 2):
                receipt = await state.send(
                    Set("job", {"phase": phase, "attempt": attempt}, eq=False)
                )
                report = await receipt.acks(timeout=5)
                if report.ok:
                    print(f"{phase}: every worker done (attempt {attempt})")
                    break
                why = [f"{a.subscriber}: {a.message}" for a in report.failed]
                print(f"{phase}: {report.result.name} {why}{list(report.missing)}")
            else:
                print(f"{phase}: giving up")
                return
        print("job finished at revision", state.revision)


if __name__ == "__main__":
    anyio.run(main)
