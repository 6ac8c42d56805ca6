"""A machine's state shared by worker threads: a card sorter, with Store.

Four sorter threads take cards from a hopper and drop them into bins; a
safety check watches the bins and flags a full one; any thread reads the
totals at any time. Plain threads, no async code: every Store call blocks
until the state actor applied it.

Run: python examples/uses/card_sorter.py
"""

from __future__ import annotations

import threading

from stateward import Resync, Store

CARDS = 400
BINS = ("A", "B", "C", "D")


def main() -> None:
    with Store(initial={"hopper": CARDS, "bins": dict.fromkeys(BINS, 0)}) as store:
        jams = []

        def safety(event):  # a worker thread, one event at a time, in order
            if isinstance(event, Resync):  # fell behind: look at the bins now
                full = [b for b, n in store.get("bins").items() if n >= 50]
            else:
                full = [event.path] if event.new_value == 50 else []
            jams.extend(full)

        store.subscribe(safety, "bins.*")

        def sorter(n: int) -> None:
            while True:

                def take(s: Store) -> str | None:
                    left = s.get("hopper")
                    if left == 0:
                        return None
                    target = BINS[left % len(BINS)]
                    s.set("hopper", left - 1)
                    s.set(f"bins.{target}", s.get(f"bins.{target}") + 1)
                    return target

                # Read-modify-write as one transaction, retried on conflict:
                # four threads never lose or double a card.
                if store.update(take) is None:
                    return

        threads = [threading.Thread(target=sorter, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        bins = store.get("bins")
        print("hopper:", store.get("hopper"), "bins:", bins)
        print("cards accounted for:", sum(bins.values()) == CARDS)
        print("bins that reached 50:", sorted(set(jams)))


if __name__ == "__main__":
    main()
