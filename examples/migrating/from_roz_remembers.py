"""roz-remembers' synchronous Store, moved to stateward's Store."""

from pathlib import Path

from stateward import Store

changes = []
with Store(
    {"job": {"bins": 10}}, state_file="roz.json"
) as store:  # initial + persistence
    store.subscribe(lambda event: changes.append((event.path, event.new_value)), "job")
    print(store.set("job.sorted", 3))  # True: applied (False: cannot apply here)
    print(store.get("job.sorted"))  # 3
    print(store.get("job.missing", default=0))
# closing let the subscriber handle what it had: one callback per change, in order
print("changed:", changes)
print(Path("roz.json").read_text().replace("\n", "").replace(" ", ""))
