"""The remote feed: watchers read its stream, not the owner; no gap, no duplicate."""

from __future__ import annotations

import contextlib

import anyio
import pytest

from stateward import CompactedError, Resync, Set, StateChanged, open_state
from stateward.actors import _handle_feed
from stateward.remote import connect_redis, feed as feed_module, serve_redis

from .redislib import wait_for

pytestmark = pytest.mark.anyio

NAME = "jobs"


async def _collect(feed, count, events, *, on_each=None):
    async with contextlib.aclosing(feed):
        async for event in feed:
            events.append(event)
            if on_each is not None:
                await on_each(event)
            if len(events) == count:
                return


async def test_watch_resumes_from_a_revision_then_goes_live_without_gap_or_duplicate(
    redis,
):
    with anyio.fail_after(30):
        async with (
            open_state({}) as state,
            serve_redis(state, redis.url, name=NAME) as server,
            connect_redis(redis.url, name=NAME) as remote,
        ):
            for i in range(10):
                await state.send(Set(f"jobs.j{i}", i))
                await state.send(Set("other", i))  # filtered out by the pattern
            await wait_for(lambda: server.feed.published == state.revision)
            events = []

            async def more(event):
                if event.new_value == 9:  # caught up: now live changes
                    for i in range(10, 15):
                        await state.send(Set(f"jobs.j{i}", i))

            feed = remote.watch("jobs.**", from_revision=6)
            await _collect(feed, 11, events, on_each=more)
            values = [e.new_value for e in events]
            assert values == list(range(3, 14))
            revisions = [e.revision for e in events]
            assert revisions == sorted(set(revisions))
            assert all(isinstance(e, StateChanged) for e in events)
            # A watcher is not a subscriber of the owner: it answers no Ack.
            assert state.subscriber_statistics() == {}
            receipt = await state.send(Set("jobs.x", 1))
            assert receipt.subscribers == ()


async def test_twenty_watchers_cost_the_owner_no_subscriber(redis):
    with anyio.fail_after(30):
        async with (
            open_state({}) as state,
            serve_redis(state, redis.url, name=NAME),
            connect_redis(redis.url, name=NAME) as remote,
        ):
            results = [[] for _ in range(20)]
            async with anyio.create_task_group() as tg:
                for got in results:
                    tg.start_soon(_collect, remote.watch("a", from_revision=0), 5, got)
                for i in range(5):
                    await state.send(Set("a", i))
            assert all([e.new_value for e in got] == [0, 1, 2, 3, 4] for got in results)
            assert state.subscriber_statistics() == {}


async def test_a_watch_older_than_the_feed_is_replayed_by_the_owner(redis):
    with anyio.fail_after(30):
        async with (
            open_state({}, history=1000) as state,
            serve_redis(state, redis.url, name=NAME, feed_size=1) as server,
            connect_redis(redis.url, name=NAME) as remote,
        ):
            for i in range(300):  # MINID trimming is approximate: well past it
                await state.send(Set("n", i))
            await wait_for(lambda: server.feed.published == 300)
            events = []
            await _collect(remote.watch("n", from_revision=10), 5, events)
            assert [e.new_value for e in events] == [10, 11, 12, 13, 14]

        async with open_state({}, history=0) as state:
            # Served once written: the feed starts at the newest revision.
            # (Served before, it may publish the first revisions one by one,
            # each a gap, "older than the owner keeps", which approximate
            # trimming keeps: the watch then reads those gaps as a Resync.)
            for i in range(300):
                await state.send(Set("n", i))
            async with (
                serve_redis(state, redis.url, name="other", feed_size=1) as server,
                connect_redis(redis.url, name="other") as remote,
            ):
                await wait_for(lambda: server.feed.published == 300)
                with pytest.raises(CompactedError):
                    await _collect(remote.watch("n", from_revision=2), 1, [])


async def test_redis_losing_the_feed_is_published_again_and_never_a_silent_gap(redis):
    with anyio.fail_after(60):
        async with (
            open_state({}, history=1000) as state,
            serve_redis(state, redis.url, name=NAME) as server,
            connect_redis(redis.url, name=NAME) as remote,
        ):
            events = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(_collect, remote.watch("n", from_revision=0), 40, events)
                for i in range(20):
                    await state.send(Set("n", i))
                await wait_for(lambda: len(events) == 20)
                await anyio.to_thread.run_sync(redis.restart)  # the feed is gone
                for i in range(20, 40):
                    await state.send(Set("n", i))
                await wait_for(lambda: server.feed.reseeds >= 1)
            assert [e.new_value for e in events] == list(range(40))

        # With a history too short to publish again, the lost part is a Resync.
        async with (
            open_state({}, history=5) as state,
            serve_redis(state, redis.url, name="short") as server,
            connect_redis(redis.url, name="short") as remote,
        ):
            events = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(_collect, remote.watch("n", from_revision=0), 16, events)
                for i in range(10):
                    # One at a time: the history (5) must hold what is published.
                    await state.send(Set("n", i))
                    await wait_for(lambda: server.feed.published == state.revision)
                await wait_for(lambda: len(events) == 10)
                redis.kill()  # Redis away while the state moves on
                for i in range(10, 30):
                    await state.send(Set("n", i))
                await anyio.to_thread.run_sync(redis.start)
            resync = events[10]
            assert isinstance(resync, Resync)
            assert (resync.first_revision, resync.last_revision) == (11, 25)
            assert [e.new_value for e in events[11:]] == [25, 26, 27, 28, 29]
            assert server.feed.gaps == 25  # revisions 1..25: a new stream starts at 0


async def test_old_values_over_the_message_cap_are_left_out_of_the_feed(
    redis, monkeypatch
):
    # A large table replaced: its old value is not encoded on the owner's
    # loop (a fifth of a second at 300,000 leaves) to be published; the
    # watcher gets the change without it. A small old value still comes.
    olds = []
    real = feed_module.encode_feed

    def spied(revision, action_id, source, payload, changes):
        olds.extend(old for _, _, old, _ in changes)
        return real(revision, action_id, source, payload, changes)

    monkeypatch.setattr(feed_module, "encode_feed", spied)
    table = {f"k{i}": {"n": i, "tag": "t" * 20} for i in range(60_000)}  # 2.4 MB
    with anyio.fail_after(30):
        async with (
            open_state({"jobs": table, "x": 0}) as state,
            serve_redis(state, redis.url, name=NAME) as server,
            connect_redis(redis.url, name=NAME) as remote,
        ):
            await state.send(Set("jobs", {}))
            await state.send(Set("x", 1))
            await wait_for(lambda: server.feed.published == state.revision)
            events = []
            await _collect(remote.watch("**", from_revision=0), 2, events)
    cleared, small = events
    assert (cleared.path, cleared.old_value, cleared.new_value) == ("jobs", None, {})
    assert (small.path, small.old_value, small.new_value) == ("x", 0, 1)
    assert olds == [None, 0]


@pytest.fixture
def reads(monkeypatch):
    """The (after, until) of every read of the files for the feed."""
    reads = []
    real = _handle_feed.replay_files

    def counted(*args, **kwargs):
        reads.append(args[1:3])
        return real(*args, **kwargs)

    monkeypatch.setattr(_handle_feed, "replay_files", counted)
    return reads


async def test_a_new_feed_beyond_the_ring_reads_the_files_once(redis, tmp_path, reads):
    # Serving a persisted state publishes its last feed_size revisions. Those
    # the history ring no longer holds come from the files: read once for
    # the window, not once per chunk of 256 (each read decodes the snapshot:
    # 40 of them for a new feed of 10,000, 8 s at 100,000 leaves).
    with anyio.fail_after(60):
        async with open_state({}, state_dir=tmp_path, history=10) as state:
            for i in range(1, 1_201):
                await state.send(Set("n", i), durable=False)
            await state.wait_durable()
            async with (
                serve_redis(state, redis.url, name=NAME, feed_size=1_000) as server,
                connect_redis(redis.url, name=NAME) as remote,
            ):
                assert server.feed.published == 1_200
                assert reads == [(200, 1_200)]  # one read, up to where it must
                events = []
                await _collect(remote.watch("n", from_revision=300), 900, events)
    assert [e.new_value for e in events] == list(range(301, 1_201))


async def test_a_feed_far_behind_resumes_with_what_it_keeps(redis, tmp_path, reads):
    # Served again after the state moved on by more than the feed keeps,
    # the owner publishes its last feed_size revisions, not everything
    # since the stream's end: the rest would be trimmed as it was written,
    # after each window was read from the files. A watcher reading along
    # sees the revisions skipped as one Resync.
    with anyio.fail_after(60):
        async with open_state({}, state_dir=tmp_path, history=10) as state:
            async with serve_redis(state, redis.url, name=NAME, feed_size=20) as server:
                for i in range(1, 6):
                    await state.send(Set("n", i))
                await wait_for(lambda: server.feed.published == 5)
            for i in range(6, 1_006):  # while nobody publishes
                await state.send(Set("n", i), durable=False)
            await state.wait_durable()
            async with connect_redis(redis.url, name=NAME) as remote:
                events = []
                async with anyio.create_task_group() as tg:
                    watch = remote.watch("n", from_revision=5)  # reads the stream
                    tg.start_soon(_collect, watch, 21, events)
                    await anyio.wait_all_tasks_blocked()  # it reads from 5 on
                    async with serve_redis(
                        state, redis.url, name=NAME, feed_size=20
                    ) as server:
                        assert server.feed.published == 1_005
                        assert server.feed.skipped == 980
                        assert reads == [(985, 1_005)]  # one window, not four
    resync = events[0]
    assert isinstance(resync, Resync)
    assert (resync.first_revision, resync.last_revision) == (6, 985)
    assert [e.new_value for e in events[1:]] == list(range(986, 1_006))
