"""Derived values: computed inside the state actor, never out of step.

Run: python examples/derived.py
"""

from __future__ import annotations

import anyio

from stateward import Set, StateChanged, open_state


async def main() -> None:
    async with open_state({"cart": {"items": []}, "vat": 0.2}) as state:
        await state.derive(
            "cart.total", "cart.items", lambda items: sum(i["price"] for i in items)
        )
        await state.derive_many(
            "cart.gross",
            ["cart.total", "vat"],
            lambda d: round(d["cart.total"] * (1 + d["vat"]), 2),
        )

        def show(event: StateChanged) -> None:
            print(f"rev {event.revision}: {event.path} = {event.new_value}")

        await state.subscribe("cart.**", show, name="ui")
        receipt = await state.send(Set("cart.items", [{"price": 10}, {"price": 5}]))
        await receipt.acks(timeout=1)  # one delivery: items, total, gross
        receipt = await state.send(Set("cart.items", [{"price": "?"}]))
        await receipt.acks(timeout=1)
        print("errors:", receipt.derive_errors)  # total and gross kept their values
        print("cart:", await state.get("cart"))


if __name__ == "__main__":
    anyio.run(main)
