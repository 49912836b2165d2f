"""Application assembly: choose and verify the model, build the engine, mount the routers.

`create_app(settings, backend=None)` does the slow, fallible work (manifest and checksums, session
creation) before returning, so a bad model directory fails start-up loudly instead of serving errors.
Warm-up runs in the background after start-up; /ready turns true when it is done.

Dialect routers (OpenAI, HF, TEI) are one entry each in `create_app`'s list of protected routers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model_export.manifest import ManifestError, verify_model_dir

from app import __version__, widget
from app.auth import auth_dependencies
from app.backend import Backend, OnnxBackend
from app.engine import Engine
from app.errors import (
    GENERIC_500,
    PayloadTooLarge,
    error_body,
    error_body_model,
    error_responses,
    install_error_handlers,
    status_for,
)
from app.metrics import Metrics
from app.model_source import ModelSourceError, resolve_model_dir
from app.providers import ProviderError, ShapeLimits
from app.routes import docs, hf, inference, openai, ops, tei
from app.settings import Settings
from app.tokenizer import TextTokenizer

log = logging.getLogger("distilserve")


class StartupError(Exception):
    """The server cannot start with this configuration; the message is for the operator."""


@dataclass(frozen=True)
class ModelSelection:
    path: Path
    reason: str
    demo: bool


def select_model(settings: Settings) -> ModelSelection:
    if settings.model_dir is not None:
        return ModelSelection(settings.model_dir, "model_dir is configured", False)
    try:
        resolved = resolve_model_dir(settings)
    except ModelSourceError as error:
        raise StartupError(str(error)) from None
    return ModelSelection(Path(resolved.path), str(resolved.reason), bool(resolved.demo))


def build_engine(settings: Settings, selection: ModelSelection, metrics: Metrics, backend: Backend | None) -> Engine:
    try:
        manifest = verify_model_dir(selection.path)
    except ManifestError as error:
        raise StartupError(f"refusing to serve {selection.path}: {error}") from None
    if "fill-mask" in manifest.tasks and manifest.special_tokens.mask is None:
        raise StartupError(f"refusing to serve {selection.path}: fill-mask is listed but there is no mask token")
    max_length = settings.max_input_length or manifest.max_length
    if max_length > manifest.max_length:
        raise StartupError(
            f"max_input_length {max_length} exceeds the model's max_length {manifest.max_length} (the position table)"
        )
    if max_length > settings.max_batch_tokens:
        raise StartupError(f"max_batch_tokens {settings.max_batch_tokens} is below the max input length {max_length}")
    tokenizer = TextTokenizer(selection.path / manifest.tokenizer_file, manifest.special_tokens, max_length, manifest.clean_up_tokenization_spaces)
    if backend is None:
        limits = ShapeLimits(settings.max_batch_size, settings.max_batch_tokens, max_length)
        try:
            backend = OnnxBackend(selection.path, manifest, settings, limits)
        except (ProviderError, ManifestError) as error:
            raise StartupError(str(error)) from None
    info = backend.info
    log.info(
        "serving %s (%s, %s) on %s; tasks %s; max input %d tokens",
        manifest.model_id, info.variant, info.dtype, info.providers, manifest.tasks, max_length,
    )
    for rank, provider in enumerate(info.providers):
        metrics.provider.labels(provider, str(rank)).set(1)
    metrics.model.labels(manifest.model_id, info.variant, info.dtype, __version__).set(1)
    return Engine(settings, manifest, tokenizer, backend, metrics)


class RequestGuard:
    """Outermost ASGI layer: body-size limit, request counts, and the last-resort 500.

    A pure ASGI middleware (not BaseHTTPMiddleware) so streaming and cancellation stay intact and an
    unexpected exception never reaches the server's default handler (which would re-raise it).
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        state: dict[str, Any] = {"status": 500, "started": False}

        async def send_tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
            await send(message)

        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._error(send_tracked, "payload_too_large", self._too_large(), path)
            self._count(scope, state["status"])
            return
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise PayloadTooLarge(self._too_large())
            return message

        try:
            await self.app(scope, receive_limited, send_tracked)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), path)
            self.metrics.failures.labels("internal").inc()
            if not state["started"]:
                await self._error(send_tracked, "internal", GENERIC_500, path)
        finally:
            self._count(scope, state["status"])

    def _too_large(self) -> str:
        return f"request body over the {self.max_body_bytes}-byte limit"

    def _count(self, scope: Scope, status: int) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        self.metrics.requests.labels(template, str(status)).inc()

    async def _error(self, send: Send, kind: str, message: str, path: str) -> None:
        import json

        body = json.dumps(error_body(kind, message, path)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status_for(kind),
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def auth_responses(router: APIRouter, enforced: bool) -> dict[int | str, dict[str, Any]]:
    """The 401 entry for a protected router's routes in OpenAPI, only when a key is enforced."""
    if not enforced:
        return {}
    # A router's routes share one error style (the OpenAI router holds exactly the OpenAI-style paths).
    body = error_body_model(getattr(router.routes[0], "path", ""))
    return error_responses("unauthorized", body=body, common=())


def create_app(settings: Settings, backend: Backend | None = None) -> FastAPI:
    started = time.perf_counter()
    metrics = Metrics()
    selection = select_model(settings)
    engine = build_engine(settings, selection, metrics, backend)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            # Uvicorn has stopped accepting and finished in-flight requests by now; drain the rest.
            await engine.stop()
            log.info("stopped")

    app = FastAPI(
        title="distilserve",
        version=__version__,
        summary="Fill-mask and embeddings for DistilBERT-class encoders on ONNX Runtime, with dynamic batching.",
        lifespan=lifespan,
        docs_url=None,  # docs.install_docs serves it with local assets
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = metrics
    app.state.model_selection = selection
    install_error_handlers(app, on_error=lambda kind: metrics.failures.labels(kind).inc())
    app.add_middleware(RequestGuard, max_body_bytes=settings.max_body_bytes, metrics=metrics)
    # Inference routers take the API-key dependency; operational routes stay open for probes.
    protected = auth_dependencies(settings.api_key)
    app.include_router(ops.router)
    for router in (inference.router, openai.router, tei.router, hf.router):
        app.include_router(router, dependencies=protected, responses=auth_responses(router, bool(protected)))
    app.include_router(widget.router)
    docs.install_docs(app)
    log.info("model loaded in %.2fs", time.perf_counter() - started)
    return app


def app_factory() -> FastAPI:
    """For `uvicorn --factory app.server:app_factory`: settings from DISTILSERVE_* env vars."""
    return create_app(Settings())
