"""A Starlette web app whose endpoints read and write the state.

The state actor lives as long as the app (its lifespan); every request
talks to it with the async API, so concurrent requests are applied in
order and each write's response carries its revision and what the
subscribers (here, an audit log) said about it. Needs
``pip install starlette httpx2`` (httpx2 for the test client below).

Run: python examples/uses/web_app.py    (exercises it with the test client)
Serve it: uvicorn examples.uses.web_app:app
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from stateward import RAS, ActionRejectedError, InvalidActionError, Set, open_state

if TYPE_CHECKING:
    from starlette.requests import Request

audit: list[str] = []


def audit_log(event):
    if getattr(event, "path", "").startswith("secrets"):
        return RAS.FAILURE, "secrets are not for the web"
    audit.append(f"r{event.revision} {event.path}")
    return RAS.SUCCESS


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    async with open_state({"machines": {}}) as state:
        await state.subscribe("**", audit_log, name="audit")
        app.state.stateward = state
        yield


async def read(request: Request) -> JSONResponse:
    state = request.app.state.stateward
    path = request.path_params["path"].replace("/", ".")
    value = await state.get(path, default=None)
    return JSONResponse({"path": path, "value": value, "revision": state.revision})


async def write(request: Request) -> JSONResponse:
    state = request.app.state.stateward
    path = request.path_params["path"].replace("/", ".")
    try:
        value = json.loads(await request.body())
        receipt = await state.send(Set(path, value, source=request.client.host))
    except (ValueError, InvalidActionError, ActionRejectedError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=422)
    report = await receipt.acks(timeout=2)
    return JSONResponse(
        {
            "revision": receipt.revision,
            "acks": report.result.name,
            "messages": [a.message for a in report.failed],
        }
    )


app = Starlette(
    routes=[
        Route("/state/{path:path}", read, methods=["GET"]),
        Route("/state/{path:path}", write, methods=["PUT"]),
    ],
    lifespan=lifespan,
)


def main() -> None:
    with TestClient(app) as client:
        print(client.put("/state/machines/m1", json={"status": "idle"}).json())
        print(client.put("/state/machines/m1/status", json="busy").json())
        print(client.get("/state/machines/m1").json())
        print(client.put("/state/secrets/key", json="hunter2").json())
        print(client.put("/state/machines/m1/status/x", json=1).status_code)
        print(client.put("/state/machines/m2", content=b"{not json").status_code)
    print("audit:", audit)


if __name__ == "__main__":
    main()
