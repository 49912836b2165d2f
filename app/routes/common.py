"""What every inference route shares: the engine lookup, client-disconnect cancellation, JSON out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import Response

from app.engine import Engine, Timings
from app.errors import ClientDisconnected

T = TypeVar("T")


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, but cancel it (so its queued inputs are skipped) if the client disconnects.

    The body has been read by now, so the next ASGI `receive` only returns on disconnect.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        raise ClientDisconnected("the client disconnected before the answer was ready")
    return task.result()


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def json_response(content: Any, timings: Timings | None = None) -> Response:
    """Serialize once with the stdlib (faster than validating a response model for large float lists)."""
    body = json.dumps(content, separators=(",", ":"), allow_nan=False).encode()
    headers = timings.headers() if timings is not None else None
    return Response(body, media_type="application/json", headers=headers)
