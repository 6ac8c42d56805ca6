"""roz-remembers' synchronous Store, moved to stateward's Store."""

from pathlib import Path

from stateward import Store

with Store(
    {"job": {"bins": 10}}, state_file="roz.json"
) as store:  # Store(initial=..., persist_path=...)
    unsubscribe = store.subscribe(
        lambda event: print("changed:", event.path, event.new_value), "job"
    )
    print(store.set("job.sorted", 3))  # True: applied (False: cannot apply here)
    print(store.get("job.sorted"))  # 3
    print(store.get("job.missing", default=0))
    unsubscribe()
print(Path("roz.json").read_text().replace("\n", "").replace(" ", ""))
