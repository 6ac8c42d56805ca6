"""A state served over Redis: remote sends, acks, duplicates, bad entries, faults."""

from __future__ import annotations

import collections
import json

import anyio
import pytest

from stateward import (
    RAS,
    Delete,
    InvalidActionError,
    InvalidPathError,
    InvalidValueError,
    PathConflictError,
    PathNotFoundError,
    RemoteError,
    RemoteUnavailableError,
    ResultCode,
    RevisionMismatchError,
    Set,
    StateClosedError,
    Transaction,
    open_state,
)
from stateward.remote import _serve, connect_redis, protocol, serve_redis
from stateward.remote._redis import open_connection
from stateward.remote._replies import decode_reply

from .redislib import wait_for

pytestmark = pytest.mark.anyio

NAME = "jobs"


def _send_request(action, client="raw", durable=None):
    return protocol.encode(
        {
            "v": 1,
            "op": "send",
            "id": action.id,
            "client": client,
            "durable": durable,
            "action": protocol.encode_action(action),
        }
    )


_wait_for = wait_for


async def test_send_get_acks_and_rejections(redis):
    async with open_state({"a": 1}) as state, serve_redis(state, redis.url, name=NAME):

        async def checker(event):
            if event.new_value == "bad":
                return RAS.ERROR, "not allowed"
            return RAS.SUCCESS

        await state.subscribe("job", checker, name="checker")
        async with connect_redis(redis.url, name=NAME) as remote:
            with anyio.fail_after(20):
                receipt = await remote.send(Set("job.phase", "building", source="w1"))
                assert receipt.changed
                assert receipt.subscribers == ("checker",)
                report = await receipt.acks(timeout=5)
                assert report.result == ResultCode.ALL_SUBS_SUCCESS
                assert [(a.subscriber, a.ras) for a in report.acks] == [("checker", 1)]
                assert await remote.get("job.phase") == "building"  # read your writes
                assert await state.get("job.phase") == "building"
                failed = await (await remote.send(Set("job.phase", "bad"))).acks(5)
                assert failed.result == ResultCode.SUB_FAILED
                assert failed.acks[0].message == "not allowed"
                with pytest.raises(PathConflictError, match="holds an int"):
                    await remote.send(Set("a.b", 1))
                with pytest.raises(PathNotFoundError):
                    await remote.send(Delete("nope", missing_ok=False))
                with pytest.raises(RevisionMismatchError):
                    await remote.send(Transaction([Set("x", 1)], if_revision=0))
                with pytest.raises(InvalidActionError, match="not persisted"):
                    await remote.send(Set("x", 1), durable=True)
                unchanged = await remote.send(Set("a", 1))
                assert not unchanged.changed
                assert await remote.get("missing", default=7) == 7


async def test_an_unanswering_subscriber_is_missing(redis):
    async with (
        open_state({}) as state,
        serve_redis(state, redis.url, name=NAME, ack_timeout=0.2),
    ):
        never = anyio.Event()

        async def stuck(event):
            await never.wait()

        await state.subscribe("", stuck, name="stuck")
        async with connect_redis(redis.url, name=NAME) as remote:
            with anyio.fail_after(20):
                receipt = await remote.send(Set("a", 1))
                report = await receipt.acks(timeout=10)
        never.set()  # let it finish: the state stops without waiting for it
        assert report.result == ResultCode.MISSING_RESPONSE
        assert report.missing == ("stuck",)


async def test_duplicates_are_applied_once_no_op_and_rejected_too(redis):
    async with (
        open_state({"a": 1}) as state,
        serve_redis(state, redis.url, name=NAME) as server,
    ):
        seen = collections.Counter()
        await state.subscribe("", lambda e: seen.update([e.action_id]), name="count")
        equal = Set("a", 1)  # changes nothing
        later = Set("a", 2)
        rejected = Set("a.b", 1)
        changing = Set("c", 3)
        async with open_connection(redis.url) as raw:
            for action in (equal, later, rejected, changing):
                await raw.xadd(f"sw:{{{NAME}}}:actions", _send_request(action))
            await _wait_for(lambda: server.applied == 3)
            for action in (equal, rejected, changing, equal, changing):
                await raw.xadd(f"sw:{{{NAME}}}:actions", _send_request(action))
            await _wait_for(lambda: server.duplicates == 5)
        assert await state.get("") == {
            "a": 2,
            "c": 3,
        }  # the late equal Set undid nothing
        assert state.revision == 2
        assert seen == {later.id: 1, changing.id: 1}
        print(f"duplicates: 5 re-sent, 0 applied again ({server})")


def _raw(**fields):
    return {b"m": json.dumps(fields).encode()}


def _get(**over):
    base = {"v": 1, "op": "get", "id": "x", "client": "c", "path": [], "default": None}
    return _raw(**{**base, **over})


_SET = {"type": "Set", "id": "x", "source": None, "payload": None, "path": "a"}


def _send(action=None, **over):
    base = {"v": 1, "op": "send", "id": "x", "client": "c", "durable": None}
    return _raw(**{**base, "action": action or {**_SET, "value": 1}, **over})


BAD_ENTRIES = {
    "not json": {b"m": b"{nope"},
    "not an object": {b"m": b"[1, 2]"},
    "a number": {b"m": b"12"},
    "nan": {b"m": json.dumps({"v": 1, "default": float("nan")}).encode()},
    "deep": {b"m": b"[" * 100_000 + b"]" * 100_000},
    "two fields": {b"m": b"{}", b"x": b"1"},
    "no field": {b"other": b"{}"},
    "unknown op": _raw(v=1, op="drop", id="x", client="c"),
    "unknown field": _get(evil=1),
    "wrong version": _get(v=2),
    "bad client": _get(client="../x"),
    "path not a list": _get(path="a"),
    "a segment not a str": _get(path=[["a"]]),
    "unknown action": _send({"type": "Exec"}),
    "action field": _send({**_SET, "value": 1, "hack": 1}),
    "wrong type": _send(durable="yes"),
    "id mismatch": _send(id="y"),
    "bad path": _send({**_SET, "path": "a..b", "value": 1}),
    "action type not a str": _send({**_SET, "type": ["Set"], "value": 1}),
    "a lone surrogate in its id": _send(
        {**_SET, "id": "x\ud800", "value": 1}, id="x\ud800"
    ),
    "a key no path can name": _send(
        {**_SET, "type": "Merge", "mapping": {"a/b": 1}, "eq": True}
    ),
    "nan value": {
        b"m": json.dumps(
            {"v": 1, "op": "send", "action": {"value": float("nan")}}
        ).encode()
    },
    "oversized": {b"m": b'{"v": 1, "pad": "' + b"x" * (1 << 20) + b'"}'},
    "outside the allow-list": _send_request(Set("secrets.key", 1), client="c"),
}


async def test_malformed_entries_are_refused_and_the_owner_keeps_serving(redis):
    async with (
        open_state({"a": 1}) as state,
        serve_redis(
            state, redis.url, name=NAME, writable={"c": ["jobs"], "ok": [""]}
        ) as server,
    ):
        async with open_connection(redis.url) as raw:
            for fields in BAD_ENTRIES.values():
                await raw.xadd(f"sw:{{{NAME}}}:actions", fields)
            await _wait_for(lambda: server.refused == len(BAD_ENTRIES))
            dead = await raw.xread(
                f"sw:{{{NAME}}}:dead", b"0-0", count=100, block_ms=None
            )
        assert len(dead) == len(BAD_ENTRIES)
        assert state.revision == 0
        async with connect_redis(redis.url, name=NAME, client="c") as remote:
            with anyio.fail_after(20):
                with pytest.raises(InvalidActionError, match="may not write"):
                    await remote.send(Set("secrets.key", 1))
                assert (await remote.send(Set("jobs.a", 1))).revision == 1
        print(
            f"bad entries: {len(BAD_ENTRIES)} refused, 0 state changes, owner serving"
        )


async def test_redis_killed_and_restarted_loses_no_acknowledged_action(redis):
    n = 60
    async with (
        open_state({}) as state,
        serve_redis(state, redis.url, name=NAME) as server,
    ):
        seen = collections.Counter()
        await state.subscribe("", lambda e: seen.update([e.action_id]), name="count")
        async with connect_redis(redis.url, name=NAME, resend_after=0.3) as remote:
            acked = []

            async def sender():
                for i in range(n):
                    receipt = await remote.send(Set(f"k.{i}", i))
                    acked.append(receipt.action_id)

            with anyio.fail_after(120):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(sender)
                    for _ in range(3):
                        await _wait_for(
                            lambda: len(acked) >= (redis.restarts + 1) * n // 4, 60
                        )
                        await anyio.to_thread.run_sync(redis.restart)
        assert await state.get("k") == {str(i): i for i in range(n)}
        assert len(acked) == n
        assert all(seen[a] == 1 for a in acked)  # applied once each
        assert sum(seen.values()) == n
        print(
            f"Redis SIGKILLed and restarted {redis.restarts} times: {n} sent, "
            f"{n} acknowledged, 0 lost, 0 applied twice; owner reconnects "
            f"{server.reconnects}, group losses {server.redis_losses}, "
            f"client resends {remote.resends}"
        )


async def test_the_dedupe_window_survives_an_owner_restart(redis, tmp_path):
    equal, rejected, changing = Set("a", 1), Set("a.b", 1), Set("c", 3)
    async with (
        open_state({"a": 1}, state_dir=tmp_path) as state,
        serve_redis(state, redis.url, name=NAME) as server,
    ):
        async with open_connection(redis.url) as raw:
            for action in (equal, rejected, changing):
                await raw.xadd(f"sw:{{{NAME}}}:actions", _send_request(action))
            await _wait_for(lambda: server.applied == 2)
        revision = state.revision
    async with (
        open_state({}, state_dir=tmp_path) as state,
        serve_redis(state, redis.url, name=NAME) as server,
    ):
        await state.send(
            Set("a", 5)
        )  # a later write that a late duplicate must not undo
        async with open_connection(redis.url) as raw:
            replies = await _replies(raw)  # the first owner's
            for action in (equal, rejected, changing):
                await raw.xadd(f"sw:{{{NAME}}}:actions", _send_request(action))
            sent = {equal.id, rejected.id, changing.id}

            async def answered_again() -> bool:
                again = (await _replies(raw))[len(replies) :]
                return sent <= set(again)

            with anyio.fail_after(10):
                while not await answered_again():  # noqa: ASYNC110 - Redis' state
                    await anyio.sleep(0.01)
        # At least three: the first owner may have stopped between answering
        # an entry and acknowledging it; the new owner answers it again from
        # the window (a duplicate too, never applied twice).
        assert server.duplicates >= 3
        assert server.applied == 0
        assert state.revision == revision + 1
        assert await state.get("") == {"a": 5, "c": 3}


async def test_a_state_stopped_under_its_server_ends_serving_not_the_block(
    redis, tmp_path
):
    # The owner's loop raised StateClosedError out of serve_redis: the task
    # group around it was cancelled and the caller's block got an exception
    # group. Serving now ends quietly; what it read and did not answer waits
    # for the next owner, which applies it once.
    async with (
        anyio.create_task_group() as tg,
        connect_redis(redis.url, name=NAME, client="worker") as remote,
    ):
        async with (
            open_state({}, state_dir=tmp_path) as state,
            serve_redis(state, redis.url, name=NAME) as server,
        ):
            with anyio.fail_after(30):
                assert (await remote.send(Set("a", 1))).revision == 1
            await state.stop()
            later: list[int] = []

            async def send_later() -> None:
                later.append((await remote.send(Set("a", 2))).revision)

            tg.start_soon(send_later)
            await _wait_for(lambda: server.stopped is not None)
            assert isinstance(server.stopped, StateClosedError)
        async with (
            open_state({}, state_dir=tmp_path) as state,
            serve_redis(state, redis.url, name=NAME) as server,
        ):
            await _wait_for(lambda: later == [2])
            assert await state.get("a") == 2
            assert state.revision == 2


async def test_the_tree_the_window_was_rebuilt_on_is_freed_in_slices(
    redis, tmp_path, monkeypatch
):
    # The journal is replayed on the tree of a snapshot: as large as the
    # state. Freed at once, in any thread, a large one would stop the
    # state's loop (about 0.1 s at a million leaves): the reaper takes it.
    from stateward.actors._reaper import Reaper
    from stateward.remote._dedupe import DedupeWindow

    async with open_state({"a": 1}, state_dir=tmp_path) as state:
        for i in range(5):
            await state.send(Set(f"k{i}", i))
    held: list[object] = []
    real_hold = Reaper.hold

    def hold(self, value):
        held.append(value)
        real_hold(self, value)

    monkeypatch.setattr(Reaper, "hold", hold)
    rebuilt: list[object] = []
    real_load = DedupeWindow.load

    def load(self, *args):
        rebuilt.append(real_load(self, *args))
        return rebuilt[-1]

    monkeypatch.setattr(DedupeWindow, "load", load)
    async with open_state({}, state_dir=tmp_path, snapshot_every=1000) as state:
        await state.send(Set("b", 2))
        async with serve_redis(state, redis.url, name=NAME):
            assert rebuilt == [await state.get("")]
            assert any(value is rebuilt[0] for value in held)


async def _replies(raw, client="raw"):
    """The request ids of every reply on *client*'s reply stream, in order."""
    entries = await raw.xread(
        f"sw:{{{NAME}}}:reply:{client}", b"0", count=10_000, block_ms=None
    )
    return [decode_reply(fields)["id"] for _, fields in entries]


async def test_a_reply_that_cannot_be_read_is_a_typed_error_not_a_wait(redis):
    # A reply whose id is a waiting request's but whose fields are not what
    # its kind holds (another version of the owner, a bug, a forged entry):
    # the request raises RemoteError at once, instead of waiting for good.
    # One with a good report but an unreadable acks report: acks() raises.
    async with connect_redis(redis.url, name=NAME) as remote:
        stream = f"sw:{{{NAME}}}:reply:{remote.client}"
        action = Set("a", 1)
        broken = {"id": action.id, "kind": "applied", "revision": "3"}
        async with open_connection(redis.url) as raw:
            async with anyio.create_task_group() as tg:

                async def answer_badly() -> None:
                    await wait_for(lambda: action.id in remote._waiters)
                    await raw.xadd(stream, protocol.encode(broken))

                tg.start_soon(answer_badly)
                with anyio.fail_after(10), pytest.raises(RemoteError, match="revision"):
                    await remote.send(action)

            other = Set("b", 1)
            applied = {
                "id": other.id,
                "kind": "applied",
                "revision": 4,
                "changed": True,
                "subscribers": ["s"],
                "derive_errors": [],
            }
            async with anyio.create_task_group() as tg:

                async def answer() -> None:
                    await wait_for(lambda: other.id in remote._waiters)
                    await raw.xadd(stream, protocol.encode(applied))
                    await wait_for(lambda: other.id in remote._acks)
                    acks = {"id": other.id, "kind": "acks", "result": 7}
                    await raw.xadd(stream, protocol.encode(acks))

                tg.start_soon(answer)
                with anyio.fail_after(10):
                    receipt = await remote.send(other)
                    with pytest.raises(RemoteError, match="result"):
                        await receipt.acks()


async def test_bad_arguments_are_typed_errors_at_the_client(redis):
    # Checked before anything is sent, as a local state checks them. Before,
    # a default of NaN or with a lone surrogate raised the encoder's
    # ValueError, a pattern of {} was sent as "" and then killed the
    # connection from the subscription's task, and a from_revision of "x"
    # reached the encoder.
    async with (
        open_state({"a": 1}) as state,
        serve_redis(state, redis.url, name=NAME),
        connect_redis(redis.url, name=NAME) as remote,
    ):
        with anyio.fail_after(20):
            for default in (float("nan"), "x\ud800", object(), 2**70):
                with pytest.raises(InvalidValueError):
                    await remote.get("missing", default)
            for pattern in (None, {}, "x\ud800", ("a", -1)):
                with pytest.raises(InvalidPathError):
                    await remote.subscribe(pattern, lambda event: None, name="s")
            for revision in ("x", -1, 1.5, True):
                with pytest.raises(InvalidActionError, match="from_revision"):
                    await remote.subscribe(
                        "a", lambda event: None, name="s", from_revision=revision
                    )
            assert await remote.get("a") == 1  # (the connection is whole)
        # The owner's allow-list: one str is no list of prefixes ("jobs"
        # allowed "j", "o", "b" and "s"), and -1 raised AttributeError.
        for writable in ({"c": "jobs"}, -1, ["c"], {"c": 1}):
            with pytest.raises(InvalidActionError, match="writable"):
                async with serve_redis(state, redis.url, name="x", writable=writable):
                    pass


async def test_unreachable_redis_is_a_typed_error():
    url = "redis://127.0.0.1:1"
    with anyio.fail_after(20):
        with pytest.raises(RemoteUnavailableError):
            async with connect_redis(url, name=NAME):
                pass
        async with open_state({}) as state:
            with pytest.raises(RemoteUnavailableError):
                async with serve_redis(state, url, name=NAME):
                    pass


async def test_actions_that_cannot_cross_are_typed_errors_at_the_sender(redis):
    async with (
        open_state({}) as state,
        serve_redis(state, redis.url, name=NAME),
        connect_redis(redis.url, name=NAME) as remote,
    ):
        if True:
            with pytest.raises(InvalidActionError, match="eq callable"):
                await remote.send(Set("a", 1, eq=lambda a, b: False))
            big = Set("a", "x" * ((1 << 20) - 100), payload="y" * 50)
            with pytest.raises(InvalidActionError, match="message cap"):
                await remote.send(big)


async def test_100_concurrent_remote_senders_lose_nothing(redis):
    senders, each = 100, 3
    async with (
        open_state({}) as state,
        serve_redis(state, redis.url, name=NAME) as server,
        connect_redis(redis.url, name=NAME) as remote,
    ):
        seen = collections.Counter()
        await state.subscribe("", lambda e: seen.update([e.action_id]), name="count")
        acked = []

        async def sender(k):
            for i in range(each):
                receipt = await remote.send(Set(f"s{k}.i{i}", i))
                acked.append(receipt.action_id)

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for k in range(senders):
                    tg.start_soon(sender, k)
        assert len(acked) == senders * each
        assert sorted(seen) == sorted(acked)
        assert all(n == 1 for n in seen.values())
        assert server.applied == senders * each
        print(f"{senders} concurrent remote senders: {len(acked)} acknowledged, 0 lost")


async def test_client_kill_of_every_connection_loses_nothing(redis):
    n = 40
    async with (
        open_state({}) as state,
        serve_redis(state, redis.url, name=NAME) as server,
        connect_redis(redis.url, name=NAME, resend_after=0.3) as remote,
    ):
        seen = collections.Counter()
        await state.subscribe("", lambda e: seen.update([e.action_id]), name="count")
        acked = []
        kills = 0

        async def sender():
            for i in range(n):
                receipt = await remote.send(Set(f"k.{i}", i))
                acked.append(receipt.action_id)

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                tg.start_soon(sender)
                while len(acked) < n:
                    goal = min(n, (kills + 1) * 8)
                    await wait_for(lambda goal=goal: len(acked) >= goal, 60)
                    if len(acked) < n:
                        await anyio.to_thread.run_sync(redis.client_kill)
                        kills += 1
        assert sorted(seen) == sorted(acked)
        assert all(c == 1 for c in seen.values())
        print(
            f"CLIENT KILL of every connection {kills} times: {n} acknowledged, "
            f"0 lost, 0 applied twice; owner reconnects {server.reconnects}"
        )


async def test_the_callers_own_errors_leave_a_connection_untranslated(redis):
    # Only Redis' errors become RemoteUnavailableError: a timeout of the
    # caller's own fail_after inside the block stays a TimeoutError.
    async def sleep_past_a_deadline():
        async with open_connection(redis.url):
            with anyio.fail_after(0.01):
                await anyio.sleep_forever()

    async def raise_mine():
        async with connect_redis(redis.url, name=NAME):
            raise FileNotFoundError("mine")

    with pytest.raises(TimeoutError):
        await sleep_past_a_deadline()
    with pytest.raises(FileNotFoundError, match="mine"):
        await raise_mine()


async def test_a_read_of_durable_sends_shares_one_fsync_and_answers_after_it(
    redis, tmp_path
):
    n = 50
    actions = [Set(f"k{i}", i) for i in range(n)]
    async with open_connection(redis.url) as raw:
        # Waiting before the owner starts: its first read takes all of them.
        for action in actions:
            await raw.xadd(f"sw:{{{NAME}}}:actions", _send_request(action))
        async with open_state({}, state_dir=tmp_path, durability="fsync") as state:
            before = state.statistics().journal_fsyncs
            async with serve_redis(state, redis.url, name=NAME) as server:
                await _wait_for(lambda: server.applied == n)
                with anyio.fail_after(10):
                    while len(replies := await _replies(raw)) < n:  # noqa: ASYNC110
                        await anyio.sleep(0.01)
            assert replies == [a.id for a in actions]  # in order
            # One at a time, each send would wait for an fsync of its own (50);
            # the journal's group commit shares them.
            assert state.statistics().journal_fsyncs - before <= 5
            assert state.statistics().durable_revision == n


async def test_one_read_mixing_sends_rejections_duplicates_and_gets_keeps_order(
    redis,
):
    first, rejected, last = Set("a", 1), Set("a.b", 1), Set("c", 3)
    get = {
        "v": 1,
        "op": "get",
        "id": "get-1",
        "client": "raw",
        "path": ["c"],
        "default": None,
    }
    async with open_connection(redis.url) as raw:
        key = f"sw:{{{NAME}}}:actions"
        for fields in (
            _send_request(first),
            _send_request(rejected),
            _send_request(first),  # a duplicate within the same read
            protocol.encode(get),  # reads what the sends before it wrote
            _send_request(last),
        ):
            await raw.xadd(key, fields)
        async with (
            open_state({}) as state,
            serve_redis(state, redis.url, name=NAME) as server,
        ):
            with anyio.fail_after(10):
                while len(await _replies(raw)) < 5:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            entries = await raw.xread(
                f"sw:{{{NAME}}}:reply:raw", b"0", count=10, block_ms=None
            )
            replies = [decode_reply(f) for _, f in entries]
            assert [r["id"] for r in replies] == [
                first.id,
                rejected.id,
                first.id,
                "get-1",
                last.id,
            ]
            kinds = [r["kind"] for r in replies]
            assert kinds == ["applied", "rejected", "applied", "value", "applied"]
            assert replies[0] == replies[2]  # the duplicate answered from the window
            assert replies[3]["value"] is None  # c is written after the get
            assert (server.applied, server.duplicates) == (2, 1)
            assert await state.get("") == {"a": 1, "c": 3}


async def test_one_owner_serves_a_name_at_a_time(redis):
    # Two owners of one name each applied the requests they happened to
    # read: two states with half of the writes each, and nothing said.
    key = protocol.Keys(NAME).owner
    async with (
        open_state({}) as first,
        serve_redis(first, redis.url, name=NAME, lease=0.3) as server,
        open_state({}) as second,
    ):
        with anyio.fail_after(10), pytest.raises(RemoteError, match="another owner"):
            async with serve_redis(second, redis.url, name=NAME, lease=0.3):
                pass  # (never: the first owner keeps its lease)
        assert server.stopped is None
        async with connect_redis(redis.url, name=NAME) as remote:
            with anyio.fail_after(10):
                await remote.send(Set("a", 1))
        assert await first.get("a") == 1
    async with open_connection(redis.url) as raw:
        assert await raw.get_text(key) is None  # given back at the end


async def test_a_lease_left_by_a_killed_owner_runs_out_then_is_taken(redis):
    key = protocol.Keys(NAME).owner
    async with open_connection(redis.url) as raw:
        assert await raw.claim(key, "killed-owner", 300)
        async with open_state({}) as state:
            with anyio.fail_after(10):
                async with serve_redis(state, redis.url, name=NAME, lease=0.3):
                    assert (await raw.get_text(key)) not in (None, "killed-owner")


async def test_an_owner_reclaims_a_lost_lease_and_stops_when_it_is_taken(redis):
    key = protocol.Keys(NAME).owner
    async with (
        open_connection(redis.url) as raw,
        open_state({}) as state,
        serve_redis(state, redis.url, name=NAME, lease=0.3) as server,
        connect_redis(redis.url, name=NAME, client="dash") as there,
    ):
        await there.subscribe("job", lambda e: None, name="dashboard")
        mine = await raw.get_text(key)
        await raw.delete([key])  # Redis lost it (a restart without persistence)
        await wait_for(lambda: _holds(raw, key, mine))  # claimed again
        assert server.stopped is None
        await raw.delete([key])
        assert await raw.claim(key, "another-owner", 60_000)
        await wait_for(lambda: server.stopped is not None)
        assert isinstance(server.stopped, RemoteError)
        assert "another-owner" in str(server.stopped)
        assert "dashboard" not in state.subscriber_statistics()  # its stand-in left
        # The block goes on; the name is another owner's now.
        assert await state.get("") == {}
        await raw.delete([key])


async def test_an_owner_cut_off_past_its_lease_reads_nothing_more(redis, monkeypatch):
    # Reconnected, it read (and applied) the requests meant for the owner
    # that took over, until its next renewal noticed. It now looks first.
    async def no_renewals(lease, lost):
        await anyio.sleep_forever()

    monkeypatch.setattr(_serve, "keep", no_renewals)  # only the reconnection looks
    key = protocol.Keys(NAME).owner
    async with (
        open_connection(redis.url) as raw,
        open_state({}) as state,
        serve_redis(state, redis.url, name=NAME, lease=30) as server,
    ):
        await raw.delete([key])
        assert await raw.claim(key, "next-owner", 60_000)
        redis.client_kill()  # the owner reconnects
        await wait_for(lambda: server.stopped is not None)
        assert "next-owner" in str(server.stopped)
        assert server.reconnects >= 1


async def _holds(raw, key: str, token: str | None) -> bool:
    return await raw.get_text(key) == token
