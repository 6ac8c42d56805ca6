"""A state directory is not trusted: symlinks, FIFOs, directories, bad records."""

from __future__ import annotations

import json
import math
import os
import tracemalloc

import anyio
import pytest

from stateward import CorruptStateError, Set, StateActor, Store, open_state
from stateward.actors._files import Files
from stateward.actors.persistence import (
    QUARANTINE,
    PersistenceConfig,
    encode_record,
    inspect_directory,
    recover,
    segment_name,
    snapshot_name,
)
from stateward.actors.persistence._format import _snapshot_header
from stateward.actors.persistence._snapshot import read_snapshot

pytestmark = pytest.mark.anyio


async def _make(path, n=3):
    async with open_state({}, state_dir=path) as state:
        for i in range(n):
            await state.send(Set(f"k{i}", i))


async def _reopen(path):
    with anyio.fail_after(10):
        async with open_state({}, state_dir=path) as state:
            return await state.get("")


async def test_10_a_lock_that_is_a_symlink_is_never_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    state_dir = tmp_path / "s"
    state_dir.mkdir()
    (state_dir / "LOCK").symlink_to(victim)
    with pytest.raises(CorruptStateError, match="symlink"):
        await _reopen(state_dir)
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("kind", ["fifo", "dir", "symlink"])
async def test_10_foreign_files_under_our_names_are_ignored(tmp_path, kind):
    state_dir = tmp_path / "s"
    await _make(state_dir)
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in (snapshot_name(10**6), segment_name(10**6), "x.snap.tmp"):
        target = state_dir / name
        if kind == "fifo":
            os.mkfifo(target)
        elif kind == "dir":
            target.mkdir()
        else:
            target.symlink_to(outside / name)
    assert await _reopen(state_dir) == {"k0": 0, "k1": 1, "k2": 2}
    assert os.listdir(outside) == []  # nothing created through a symlink
    with anyio.fail_after(10):
        found = await anyio.to_thread.run_sync(inspect_directory, str(state_dir))
    assert found.tree == {"k0": 0, "k1": 1, "k2": 2}


async def test_10_a_planted_quarantine_symlink_creates_nothing_outside(tmp_path):
    state_dir = tmp_path / "s"
    await _make(state_dir)
    outside = tmp_path / "outside"
    outside.mkdir()
    (state_dir / QUARANTINE).symlink_to(outside)
    # damage the newest snapshot so that recovery wants to quarantine it
    newest = max(n for n in os.listdir(state_dir) if n.endswith(".snap"))
    data = bytearray((state_dir / newest).read_bytes())
    data[-1] ^= 0xFF
    (state_dir / newest).write_bytes(bytes(data))
    with pytest.raises(CorruptStateError, match="not a directory"):
        await _reopen(state_dir)
    assert os.listdir(outside) == []


async def test_10_planted_file_inside_quarantine_is_not_written_through(tmp_path):
    state_dir = tmp_path / "s"
    await _make(state_dir)
    outside = tmp_path / "outside.txt"
    (state_dir / QUARANTINE).mkdir()
    newest = max(n for n in os.listdir(state_dir) if n.endswith(".snap"))
    (state_dir / QUARANTINE / newest).symlink_to(outside)  # dangling
    data = bytearray((state_dir / newest).read_bytes())
    data[-1] ^= 0xFF
    (state_dir / newest).write_bytes(bytes(data))
    assert await _reopen(state_dir) == {"k0": 0, "k1": 1, "k2": 2}  # older + journal
    assert not outside.exists()
    assert f"{newest}.2" in os.listdir(state_dir / QUARANTINE)


def _write_snapshot(state_dir, revision, body: bytes, store_id=b"\0" * 16):
    header = _snapshot_header(store_id, revision, body)
    (state_dir / snapshot_name(revision)).write_bytes(header + body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b"[" * 100_000 + b"]" * 100_000,
        json.dumps({"a": "\ud800"}).encode(),
        b'{"a": 18446744073709551616}',
    ],
    ids=["nan", "infinity", "deep", "lone-surrogate", "huge-int"],
)
def test_10_a_snapshot_with_a_valid_checksum_is_still_validated(tmp_path, body):
    state_dir = tmp_path / "s"
    state_dir.mkdir()
    _write_snapshot(state_dir, 0, body)
    with pytest.raises(CorruptStateError):
        recover(PersistenceConfig(str(state_dir)), {})


def test_10_a_huge_sparse_snapshot_is_refused_without_reading_it_whole(tmp_path):
    state_dir = tmp_path / "s"
    state_dir.mkdir()
    path = state_dir / snapshot_name(0)
    length = 900 << 20
    header = _snapshot_header(b"\0" * 16, 0, b"")  # claims an empty body
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + length)
    tracemalloc.start()
    try:
        with pytest.raises(CorruptStateError, match="does not match its checksum"):
            read_snapshot(Files(), str(path), path.name)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20  # chunks, not the 900 MiB
    with pytest.raises(CorruptStateError, match="no snapshot reads back whole"):
        recover(PersistenceConfig(str(state_dir)), {})
    assert os.listdir(state_dir / QUARANTINE) == [path.name]


@pytest.mark.parametrize(
    "ops",
    [
        [["s", ["a"], math.nan]],
        [["s", ["a"], json.loads("[" * 80 + "]" * 80)]],
        [["s", "a", 1]],
        [["s", [1], 1]],
        [["s", ["a"] * 70, 1]],
        [["x", ["a"]]],
        {"not": "a list"},
        [["a", 5, None, None]],
    ],
    ids=[
        "nan",
        "deep",
        "path-str",
        "path-int",
        "path-long",
        "unknown-op",
        "not-list",
        "bad-id",
    ],
)
async def test_10_a_record_with_a_valid_checksum_is_still_validated(tmp_path, ops):
    state_dir = tmp_path / "s"
    await _make(state_dir, n=0)
    segment = state_dir / segment_name(1)
    payload = json.dumps(ops, allow_nan=True).encode()
    segment.write_bytes(segment.read_bytes() + encode_record(1, payload, 0))
    with pytest.raises(CorruptStateError, match="revision 1"):
        await _reopen(state_dir)


async def test_10_a_deep_tree_recovers(tmp_path):
    """A value at the deepest path nests deeper than one value may."""
    deep_path = tuple(f"p{i}" for i in range(64))
    value: object = 1
    for _ in range(60):
        value = [value]
    async with open_state({}, state_dir=tmp_path, snapshot_every=1) as state:
        await state.send(Set(deep_path, value))
    async with open_state({}, state_dir=tmp_path) as state:
        assert await state.get(deep_path) == value


def test_10_store_refuses_a_fifo_state_file(tmp_path):
    fifo = tmp_path / "state.json"
    os.mkfifo(fifo)
    with pytest.raises(CorruptStateError, match="FIFO"):
        Store(state_file=fifo)


def test_10_store_removes_temp_files_of_dead_processes(tmp_path):
    target = tmp_path / "state.json"
    dead = tmp_path / "state.json.999999999.tmp"
    dead.write_text("{}")
    mine = tmp_path / f"state.json.{os.getppid()}.tmp"  # alive: kept
    mine.write_text("{}")
    with Store(state_file=target, default={}) as store:
        store.set("a", 1)
    assert not dead.exists()
    assert mine.exists()


async def test_a_state_started_from_none_replays_its_journal(tmp_path):
    """Its first snapshot holds null, which stands for {} (as Tree(None) does)."""
    config = PersistenceConfig(str(tmp_path), durability="none")
    async with anyio.create_task_group() as tg:
        state = await tg.start(StateActor(persistence=config).run)
        await state.send(Set("k.0", 1), durable=True)
        tg.cancel_scope.cancel()  # no clean stop: no final snapshot
    recovered = await anyio.to_thread.run_sync(recover, config, None)
    recovered.journal.close()
    assert recovered.tree.read("") == {"k": {"0": 1}}
