"""atomic-store's open()/commit() and nested with-blocks, moved to Store."""

import json
from pathlib import Path

from stateward import Store

store = Store(
    state_file="gathered.json", default={}
)  # atomic_store.open(path, default={})
with store.transaction():  # the outermost block writes once
    store.set("state", "running")
    with store.transaction():  # ignore_inner_exits=True: joins
        store.set("thought", "I would not eat green eggs and ham.")
    print("written inside the block:", Path("gathered.json").exists())  # False
store.save()  # my_store.commit()
store.set("state", "done")
store.close()  # writes only what changed
print(json.loads(Path("gathered.json").read_text()))
