"""Plain synchronous code today: run the state actor on a portal thread.

A dedicated synchronous facade (Store) is planned; until then anyio's blocking
portal runs the actor on one background event loop and lets plain code call it.

Run it: python examples/sync_portal.py
"""

from anyio.from_thread import start_blocking_portal

from stateward import Set, Transaction, open_state

changes = []

# One background event loop thread runs the actor; plain code calls into it.
with (
    start_blocking_portal() as portal,
    portal.wrap_async_context_manager(open_state({"job": {"sorted": 0}})) as state,
):
    portal.call(state.subscribe, "job", changes.append)  # a sync handler
    receipt = portal.call(state.send, Set("job.sorted", 1))
    portal.call(state.send, Transaction([Set("job.bins", 12), Set("job.sorted", 0)]))
    print("sorted:", portal.call(state.get, "job.sorted"))
    print("report:", portal.call(receipt.acks, 1.0).result.name)
    print("revision:", state.revision)

print("events:", [(e.path, e.new_value) for e in changes])
