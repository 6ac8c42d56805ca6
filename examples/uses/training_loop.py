"""A training loop that checkpoints its model and replay buffer, and resumes after a kill.

Every 5 steps the state tree (step, losses) and your own objects (the model,
the buffer) are saved together in one checkpoint; a run that dies (here:
SIGKILLs itself with --crash-at) resumes from the newest complete one, so
no step after it is lost twice and none before it is redone.

Run: python examples/uses/training_loop.py DIR [--crash-at STEP]
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import anyio

from stateward import Checkpoints, Merge, open_state

STEPS, EVERY = 20, 5


class Model:
    def __init__(self) -> None:
        self.weight = 0.0

    def save_state(self, path: Path) -> None:
        path.write_text(json.dumps(self.weight))

    def load_state(self, path: Path) -> None:
        self.weight = json.loads(path.read_text())


class Buffer:
    def __init__(self) -> None:
        self.items: list[int] = []

    def save_state(self, path: Path) -> None:
        path.write_text(json.dumps(self.items))

    def load_state(self, path: Path) -> None:
        self.items = json.loads(path.read_text())


async def train(directory: Path, crash_at: int | None) -> None:
    model, buffer = Model(), Buffer()
    async with open_state({"step": 0, "losses": []}) as state:
        checkpoints = Checkpoints(state, directory / "checkpoints", keep=2)
        checkpoints.register("model", model)
        checkpoints.register("buffer", buffer)
        if checkpoints.list():
            info = await checkpoints.load()  # the newest complete checkpoint
            print(f"resumed at step {await state.get('step')} ({info.path.name})")
        step = await state.get("step")
        while step < STEPS:
            step += 1
            model.weight += 0.5  # one step of "training"
            buffer.items.append(step)
            losses = [*await state.get("losses"), round(1 / step, 3)]
            await state.send(Merge("", {"step": step, "losses": losses}))
            if step % EVERY == 0:
                await checkpoints.save(name=f"step-{step:04d}")
            if step == crash_at:
                os.kill(os.getpid(), signal.SIGKILL)  # as a power cut would
        print(f"done: step {step}, weight {model.weight}, buffer {len(buffer.items)}")


def main() -> None:
    directory = Path(sys.argv[1])
    crash_at = (
        int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[2] == "--crash-at" else None
    )
    anyio.run(train, directory, crash_at)


if __name__ == "__main__":
    main()
