"""Plain synchronous code: the Store, with no event loop in sight.

The Store runs the state actor on one background thread; every call blocks
until the actor has applied it. Safe from any number of threads.

Run it: python examples/store_quickstart.py   (writes state.json in a temp dir)
"""

import tempfile
import threading
from pathlib import Path

from stateward import Store

path = Path(tempfile.mkdtemp()) / "state.json"
seen = threading.Event()
changes = []


def on_change(event):  # runs in a worker thread, one event at a time, in order
    changes.append((event.path, event.new_value))
    if len(changes) == 3:
        seen.set()


with Store({"job": {"bins": 10, "sorted": 0}}, state_file=path) as store:
    store.subscribe(on_change, "job")
    print("set:", store.set("job.sorted", 1))  # True
    print("set into a scalar:", store.set("job.sorted.x", 1))  # False: cannot apply
    print("missing:", store.get("job.missing", default=0))  # 0
    with store.transaction():  # all or nothing, one revision
        store.set("job.bins", 12)
        store.set("job.sorted", 0)
    try:
        with store.transaction():
            store.set("job.bins", 99)
            raise RuntimeError("changed my mind")
    except RuntimeError:
        pass
    print("state:", store.get_state())
    seen.wait(5)
# close() saved the file atomically (temp file, fsync, rename, fsync of the dir)
print("file:", path.read_text().replace("\n", "").replace(" ", ""))
print("events:", changes)
