"""restate's ControllerSync (set_state/get_state, bubbling, derived values), moved."""

import anyio

from stateward import Set, open_state


async def main():
    async with open_state() as state:  # ControllerSync()

        def on_users_change(event):  # subscribe("/users", ...): bubbles from /users/1
            print("users changed at", event.path)

        await state.subscribe("/users", on_users_change, name="users")
        await state.derive(
            "/admins",
            "/users",
            lambda users: sorted(
                u["name"] for u in (users or {}).values() if u["role"] == "admin"
            ),
        )  # a derived value, recomputed in the same revision
        await state.send(Set("/users/1", {"name": "Alice", "role": "admin"}))
        receipt = await state.send(Set("/users/2", {"name": "Bob", "role": "user"}))
        await receipt.acks(timeout=1)
        print(await state.get("/users/1"))  # get_state("/users/1")
        print(await state.get("/admins"))


anyio.run(main)
