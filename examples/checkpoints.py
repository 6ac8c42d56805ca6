"""Checkpoints: save the state tree and your own objects together, then restore.

Run: python examples/checkpoints.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import anyio

from stateward import Checkpoints, Set, open_state


class Model:
    """Anything with save_state(path) and load_state(path) can be checkpointed."""

    def __init__(self) -> None:
        self.weights = [0.0, 0.0]

    def save_state(self, path: Path) -> None:
        path.write_text(json.dumps(self.weights))

    def load_state(self, path: Path) -> None:
        self.weights = json.loads(path.read_text())


async def main() -> None:
    model = Model()
    with tempfile.TemporaryDirectory() as tmp:
        async with open_state({"step": 0}) as state:
            checkpoints = Checkpoints(state, Path(tmp) / "checkpoints", keep=2)
            checkpoints.register("model", model)
            for step in range(1, 4):  # train, checkpoint after every step
                model.weights = [step * 0.5, step * 0.25]
                await state.send(Set("step", step))
                info = await checkpoints.save(name=f"step-{step}")
                print(f"saved {info.path.name} at revision {info.revision}")
            print("kept:", [i.path.name for i in checkpoints.list()])

            model.weights = [9.9, 9.9]  # something went wrong: roll back
            await state.send(Set("step", 99))
            info = await checkpoints.load("step-2")
            print("restored:", await state.get(), model.weights)
            # Periodically instead: tg.start_soon(checkpoints.run, 600.0)


if __name__ == "__main__":
    anyio.run(main)
