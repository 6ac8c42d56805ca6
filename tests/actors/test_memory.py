"""A subscriber that never reads keeps memory bounded (isolation, L2-style)."""

from __future__ import annotations

import gc
import tracemalloc

import anyio
import pytest

from benchmarks.scale import memory_per_leaf, memory_per_subscriber
from stateward import Overflow, Set, open_state

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("overflow", [Overflow.DROP, Overflow.BLOCK])
async def test_a_subscriber_that_never_reads_keeps_memory_bounded(overflow):
    stuck = anyio.Event()

    async def never_returns(event):
        await stuck.wait()

    async def fast(event):
        return None

    # No history ring here: it is bounded too (test_feed.py), but its 1,000
    # entries, allocated while tracing, would be counted as growth.
    async with open_state({}, history=0) as state:
        slow = await state.subscribe(
            "", never_returns, name="stuck", overflow=overflow, block_timeout=0
        )
        quick = await state.subscribe("", fast, name="fast")

        async def burst(count, offset):
            for i in range(count):
                await state.send(Set(f"k{i % 100}", offset + i))

        await burst(2_000, 0)  # warm up: mailboxes full, caches filled
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            await burst(8_000, 10_000)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        stats = slow.statistics()
        assert stats.queued <= stats.mailbox_size
        assert stats.dropped == 10_000 - 1 - stats.mailbox_size
        assert quick.statistics().dropped == 0
        # an unbounded queue would hold 8,000 more deliveries here (about 2 MiB)
        assert grown < 256 * 1024, f"grew {grown} bytes over 8,000 actions"
        await state.stop(timeout=0)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_running_state_costs_about_what_a_plain_dict_costs(backend: str) -> None:
    # One copy of the tree, no more: not the actor's converted copy plus the
    # tree's own, nor the caller's object kept alive by open_state. (The
    # scale benchmark prints the same measure at a million leaves.)
    plain, used = memory_per_leaf(20_000, backend)
    assert used <= 1.2 * plain, (used, plain)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_subscriber_costs_a_few_kilobytes_before_its_mailbox_holds_anything(
    backend: str,
) -> None:
    # Its task, its mailbox, its route and its counters: 7-9 kB measured
    # (docs/performance.md, Memory). A bound with room for the noise, so
    # that a per-subscriber cache or a preallocated buffer does not go
    # unnoticed: 10,000 subscribers are a case the benchmarks run.
    cost = memory_per_subscriber(backend, 500)
    assert cost < 16_000, f"{cost:,.0f} bytes per subscriber"
