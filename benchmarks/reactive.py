"""The reactive benchmark: derived values against the plain core write.

All in one run, as ratios to the plain write measured in that run (best of
``repeat``, the variants interleaved so that a noisy moment hits all alike):

(a) plain: sequential ``send(Set("in.x", i))``, no derivation;
(b) chain: the same write feeding a chain of 10 derivations (each one the
    source of the next), all settled in the write's revision;
(c) unrelated: 1,000 derivations that do not depend on the written path.
    Target: within 1.2x of (a): the cost follows the derivations that
    depend on the write, not the number that exist.

(d) reactions: 1,000 tracked reactions, one of which reads the written path
    (it runs after every write, in its own task), the rest other paths.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio

from stateward import Set, StateActor

if TYPE_CHECKING:
    from collections.abc import Iterator

UNRELATED = 1_000
REACTIONS = 1_000
CHAIN = 10


async def _writes(n: int, variant: str) -> float:
    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor(initial={"in": {"x": 0}}).run)
        if variant == "chain":
            await state.derive("d.c1", "in.x", lambda v: v + 1)
            for k in range(2, CHAIN + 1):
                await state.derive(f"d.c{k}", f"d.c{k - 1}", lambda v: v + 1)
        elif variant == "unrelated":
            for k in range(UNRELATED):
                await state.derive(f"d.u{k}", f"in.s{k}", lambda v: v)
        elif variant == "reactions":
            seen: list[object] = []
            reaction = await state.track(lambda r: seen.append(r.get("in.x")))
            for k in range(REACTIONS - 1):
                await state.track(lambda r, k=k: r.get(f"in.r{k}"))
        start = time.perf_counter()
        for i in range(1, n + 1):
            await state.send(Set("in.x", i))
        if variant == "reactions":
            await reaction.wait_idle()
        elapsed = time.perf_counter() - start
        if variant == "chain":
            assert await state.get(f"d.c{CHAIN}") == n + CHAIN
        await state.stop()
    return n / elapsed


async def bench(n: int, repeat: int) -> dict[str, float]:
    best = {"plain": 0.0, "chain": 0.0, "unrelated": 0.0, "reactions": 0.0}
    for _ in range(repeat):
        for variant in best:
            best[variant] = max(best[variant], await _writes(n, variant))
    return best


def run(n: int, repeat: int, backends: list[str]) -> Iterator[str]:
    for backend in backends:
        out = anyio.run(bench, n, repeat, backend=backend)
        plain = out["plain"]
        chain = plain / out["chain"]
        unrelated = plain / out["unrelated"]
        verdict = "met" if unrelated <= 1.2 else "MISSES"
        yield f"| {backend} | a_plain_write | {plain:,.0f}/s |"
        yield (
            f"| {backend} | b_chain_of_{CHAIN} | {out['chain']:,.0f}/s "
            f"({chain:.2f}x the cost of (a)) |"
        )
        yield (
            f"| {backend} | c_{UNRELATED}_unrelated | {out['unrelated']:,.0f}/s "
            f"({unrelated:.2f}x the cost of (a); target <= 1.2x: {verdict}) |"
        )
        reactions = plain / out["reactions"]
        yield (
            f"| {backend} | d_{REACTIONS}_reactions_1_matching | "
            f"{out['reactions']:,.0f}/s ({reactions:.2f}x the cost of (a)) |"
        )
