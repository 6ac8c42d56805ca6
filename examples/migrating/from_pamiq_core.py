"""pamiq-core's save_state/load_state objects, StatesKeeper and PeriodicSaveCondition."""

from pathlib import Path

import anyio

from stateward import Checkpoints, KeepNewest, SaveEvery, Set, open_state


class Model:  # a PersistentStateMixin: save_state(path) / load_state(path)
    def __init__(self):
        self.weights = 0

    def save_state(self, path: Path) -> None:
        path.write_text(str(self.weights))

    def load_state(self, path: Path) -> None:
        self.weights = int(path.read_text())


class Stateless:  # saves nothing: accepted, and loaded with a path that does not exist
    def save_state(self, path: Path) -> None:
        pass

    def load_state(self, path: Path) -> None:
        pass


async def main():
    model = Model()
    async with open_state({"step": 0}, state_dir="state") as state:
        checkpoints = Checkpoints(
            state, "checkpoints", retention=KeepNewest(2)
        )  # StatesKeeper
        checkpoints.register("model", model)
        checkpoints.register("buffer", Stateless())
        condition = SaveEvery(steps=3)  # PeriodicSaveCondition
        for step in range(1, 10):
            model.weights = step * 10
            await state.send(Set("step", step))
            if condition():
                info = await checkpoints.save()
                print("saved step", step, "as checkpoint", info.sequence)
        print("kept:", [info.sequence for info in checkpoints.list()])
        model.weights = -1
        await checkpoints.load()  # the newest
        print("restored weights", model.weights, "at step", await state.get("step"))


anyio.run(main)
