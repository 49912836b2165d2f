"""What every inference route shares: picking the model's runtime, client-disconnect cancellation,
JSON out (encoded on the worker pool: a 64 x 768 float answer takes milliseconds to encode)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Query, Request
from fastapi.responses import Response

from app.errors import ClientDisconnected, InvalidInput
from app.registry import Registry
from app.runtime import ModelRuntime, Timings
from app.tokenizer import check_text
from app.workers import INLINE_SIZE, WorkerPool

INLINE_UNKNOWN = INLINE_SIZE + 1  # an answer of unknown size goes to the pool

T = TypeVar("T")

ModelQuery = Annotated[
    str | None,
    Query(
        description=(
            "The model to use, when the body cannot name it (e.g. huggingface_hub's InferenceClient posting to "
            "`http://host/?model=ID`). Without either, the first model that serves the task answers."
        )
    ),
]


def registry_of(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def runtime_for(request: Request, body_model: str | None, query_model: str | None, task: str) -> ModelRuntime:
    """The runtime that answers this request (recorded on the request for the metrics' `model` label).

    A model name is text like any input: one that is not valid Unicode is refused as the tokenizer
    refuses such text, before any message could repeat it."""
    for label, name in (("model", body_model), ("the query's model", query_model)):
        if name is not None:
            check_text(name, label)
    if body_model is not None and query_model is not None and body_model != query_model:
        raise InvalidInput(f"the body names the model {body_model!r} but the query names {query_model!r}")
    runtime = registry_of(request).get(body_model if body_model is not None else query_model, task)
    request.state.model = runtime.model_id
    return runtime


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


def encode_json(content: Any) -> bytes:
    return json.dumps(content, separators=(",", ":"), allow_nan=False).encode()


async def json_response(request: Request, content: Any, timings: Timings | None = None, size: int | None = None) -> Response:
    """Serialize once with the stdlib (faster than validating a response model for large float lists),
    on the worker pool unless `size` (numbers or strings in the answer) says it is small. `content`
    may be a function that builds the content there too."""
    workers: WorkerPool = request.app.state.workers
    build: Callable[[], Any] = content if callable(content) else lambda: content
    body = await workers.run_sized(INLINE_UNKNOWN if size is None else size, lambda: encode_json(build()))
    headers = timings.headers() if timings is not None else None
    return Response(body, media_type="application/json", headers=headers)
