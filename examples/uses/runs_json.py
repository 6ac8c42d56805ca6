"""An append-only runs.json, kept crash-safe: a results log a program grows.

Each run appends one record; the file is rewritten atomically (temp file,
fsync, rename, fsync of the directory) after every append, so a crash
leaves either the old list or the new one, never half a file. Two
programs appending at once do not lose each other's records: a Store
refuses to overwrite a file another writer changed since it read it.

Run: python examples/uses/runs_json.py [FILE]
"""

from __future__ import annotations

import sys
import time

from stateward import Store


def append_run(path: str, record: dict[str, object]) -> int:
    """Append *record* to the JSON list in *path*; return its index."""
    with Store(state_file=path, default=[], autosave=True) as runs:

        def append(s: Store) -> int:
            n = len(s.get())
            s.set(str(n), record)  # the next index appends
            return n

        return int(runs.update(append))


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "runs.json"
    for name in ("baseline", "tuned"):
        index = append_run(path, {"name": name, "at": time.time(), "ok": True})
        print(f"run {index}: {name}")
    with Store(state_file=path, default=[]) as runs:
        print("runs in the file:", [r["name"] for r in runs.get()])


if __name__ == "__main__":
    main()
