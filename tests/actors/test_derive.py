"""Derived state: glitch-free, once per action, in dependency order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from stateward import (
    ActionRejectedError,
    Delete,
    InvalidActionError,
    InvalidPathError,
    Merge,
    Set,
    StateChanged,
    Transaction,
    open_state,
)

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


def _num(value: Any) -> int:
    return value if type(value) is int else 0


def _total(data: dict[str, Any]) -> int:
    return _num(data["a"]) + _num(data["b"])


def _expected(tree: dict[str, Any]) -> dict[str, Any]:
    total = _num(tree.get("a")) + _num(tree.get("b"))
    return {"sum": total, "double": total * 2, "neg": -_num(tree.get("a"))}


def _apply_event(model: dict[str, Any], event: StateChanged) -> None:
    """Replay one event on a plain dict (top-level keys are all we use)."""
    if event.path == "":
        model.clear()
        model.update(event.new_value)  # type: ignore[arg-type]
        return
    key = event.path.split(".")[0]
    if event.kind.value == "deleted" and "." not in event.path:
        model.pop(key, None)
    elif "." not in event.path:
        model[key] = event.new_value


actions = st.lists(
    st.one_of(
        st.builds(Set, st.sampled_from(["a", "b"]), st.integers(-9, 9)),
        st.builds(Delete, st.sampled_from(["a", "b"])),
        st.builds(
            lambda x, y: Transaction([Set("a", x), Set("b", y)]),
            st.integers(-9, 9),
            st.integers(-9, 9),
        ),
        st.builds(lambda x: Set("", {"a": x, "other": 1}), st.integers(-9, 9)),
        st.builds(lambda x: Set("other", x), st.integers(-(2**63), 2**63 - 1)),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(todo=actions)
async def test_subscribers_never_see_a_derived_value_out_of_step(
    todo: list[Any],
) -> None:
    async with open_state({"a": 1, "b": 2}) as state:
        await state.derive_many("sum", ["a", "b"], _total)
        await state.derive("double", "sum", lambda s: s * 2)
        await state.derive("neg", "a", lambda a: -_num(a))
        model: dict[str, Any] = await state.get()  # type: ignore[assignment]
        seen: list[tuple[int, dict[str, Any]]] = []

        def handler(event: StateChanged) -> int:
            _apply_event(model, event)
            seen.append((event.revision, dict(model)))
            return 1

        await state.subscribe("**", handler)
        receipts = []
        for action in todo:
            receipts.append(await state.send(action))
            tree = state.get_nowait()
            assert isinstance(tree, dict)
            for key, value in _expected(tree).items():
                assert tree[key] == value  # in the tree, after every action
        for receipt in receipts:
            assert (await receipt.acks(timeout=10)).ok
            assert receipt.derive_errors == ()
        # Per delivery (all events of one revision), the subscriber's copy of
        # the state holds sources and derived values in step.
        last = dict(seen)  # the state as of the end of each delivery
        for snapshot in last.values():
            for key, value in _expected(snapshot).items():
                assert snapshot[key] == value


async def test_one_action_recomputes_each_derivation_once_in_order() -> None:
    calls: list[str] = []

    def total(data: dict[str, Any]) -> int:
        calls.append("total")
        return _total(data)

    def shown(data: dict[str, Any]) -> str:
        calls.append("shown")
        return f"{data['a']}+{data['b']}={data['total']}"

    async with open_state({"a": 1, "b": 2}) as state:
        # Registered before its source exists as a derivation: order is fixed up.
        await state.derive_many("shown", ["a", "b", "total"], shown)
        await state.derive_many("total", ["a", "b"], total)
        calls.clear()
        receipt = await state.send(Transaction([Set("a", 10), Set("b", 20)]))
        assert calls == ["total", "shown"]  # once each, dependency first
        assert await state.get("shown") == "10+20=30"
        assert receipt.revision == 3  # two registrations, then one action


async def test_derived_paths_are_written_only_by_their_derivation() -> None:
    async with open_state({"cart": {"items": [{"price": 2}]}}) as state:
        await state.derive(
            "cart.total", "cart.items", lambda items: sum(i["price"] for i in items)
        )
        for bad in [
            Set("cart.total", 1),
            Set("cart.total.x", 1),
            Delete("cart.total"),
            Merge("cart", {"total": 5}),
            Transaction([Set("ok", 1), Set("cart.total", 1)]),
        ]:
            with pytest.raises(ActionRejectedError, match="derived"):
                await state.send(bad)
        assert await state.get("ok") is None  # the transaction did nothing
        # A write above puts the derived value back in the same revision.
        await state.send(Set("cart", {"items": [{"price": 5}], "total": 99}))
        assert await state.get("cart") == {"items": [{"price": 5}], "total": 5}
        await state.underive("cart.total")
        await state.send(Set("cart.total", 1))
        assert await state.get("cart.total") == 1


async def test_bad_derivations_are_refused() -> None:
    async with open_state({"a": 1}) as state:
        await state.derive("b", "a", lambda a: a)
        await state.derive("c", "b", lambda b: b)
        with pytest.raises(InvalidActionError, match="cycle"):
            await state.derive("a", "c", lambda c: c)  # a -> b -> c -> a
        await state.send(Set("a", 2))  # the refused one left nothing behind
        assert await state.get() == {"a": 2, "b": 2, "c": 2}
        with pytest.raises(InvalidActionError, match="overlaps"):
            await state.derive("x", "x.y", lambda v: v)
        with pytest.raises(InvalidActionError, match="overlaps"):
            await state.derive("b.c", "a", lambda v: v)
        with pytest.raises(InvalidPathError, match="wildcard"):
            await state.derive("c", "a.*", lambda v: v)
        with pytest.raises(InvalidActionError):
            await state.derive_many("c", "a", lambda v: v)  # a str is one path
        with pytest.raises(InvalidActionError):
            await state.derive("", "a", lambda v: v)
        with pytest.raises(ActionRejectedError, match="ZeroDivisionError"):
            await state.derive("e", "a", lambda a: a / 0)
        await state.send(Set("e", 1))  # not registered: e is a plain path
        with pytest.raises(ActionRejectedError, match="derivation raised"):
            await state.derive("d", "a", lambda a: {1, 2})  # not JSON


async def test_a_derivation_that_raises_keeps_its_value_and_reports() -> None:
    async with open_state({"n": 2}) as state:
        await state.derive("inv", "n", lambda n: 1 / n)
        receipt = await state.send(Set("n", 0))
        assert receipt.derive_errors == ("inv: ZeroDivisionError: division by zero",)
        assert await state.get() == {"n": 0, "inv": 0.5}
        await state.send(Set("n", 4))
        assert await state.get("inv") == 0.25


async def test_derived_values_are_journaled_with_their_action(tmp_path: Path) -> None:
    async with open_state({"a": 1}, state_dir=tmp_path) as state:
        await state.derive("b", "a", lambda a: a + 1)
        await state.send(Set("a", 5))
        revision = state.revision
    async with open_state(state_dir=tmp_path) as state:
        assert await state.get() == {"a": 5, "b": 6}  # no fn needed to recover
        receipt = await state.derive("b", "a", lambda a: a + 1)
        assert not receipt.changed  # same value: no new revision
        assert state.revision == revision


async def test_unrelated_derivations_are_not_run() -> None:
    runs = 0

    def count(v: Any) -> Any:
        nonlocal runs
        runs += 1
        return v

    async with open_state({}) as state:
        for n in range(200):
            await state.derive(f"out.d{n}", f"in.s{n}", count)
        runs = 0
        with anyio.fail_after(10):
            await state.send(Set("in.s7", 1))
        assert runs == 1
        assert await state.get("out.d7") == 1


async def test_paths_written_before_a_derivation_existed_are_watched_after() -> None:
    async with open_state({}) as state:
        await state.send(Set("src", 1))  # remembered as unrelated...
        await state.send(Set("out", 0))
        await state.derive("out", "src", lambda v: v * 10)  # ...until now
        await state.send(Set("src", 2))
        assert await state.get("out") == 20
        with pytest.raises(ActionRejectedError, match="derived"):
            await state.send(Set("out", 5))
        await state.underive("out")
        await state.send(Set("src", 3))
        assert await state.get("out") == 20  # no longer derived
        await state.send(Set("out", 5))
