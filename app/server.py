"""Application assembly: choose and verify the models, build one runtime each, mount the routers.

`create_app(settings, backend_factory=None)` does the slow, fallible work (manifests and checksums,
session creation) before returning, so a bad model directory fails start-up loudly instead of serving
errors. Warm-up runs in the background after start-up; /ready turns true when every model is warm.

Dialect routers (OpenAI, HF, TEI) are one entry each in `create_app`'s list of protected routers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model_export.manifest import Manifest, ManifestError, model_file, verify_model_dir

from app import __version__, widget
from app.auth import ApiKeyGuard, key_enforced, openapi_security
from app.backend import Backend, open_backend
from app.errors import (
    GENERIC_500,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMedia,
    error_body,
    error_body_model,
    error_responses,
    install_error_handlers,
    status_for,
)
from app.metrics import Metrics
from app.model_config import ModelOptions, ModelsFileError, options_for, read_models_file
from app.model_source import ModelSourceError, resolve_model_dirs
from app.providers import ProviderError, ShapeLimits
from app.registry import DuplicateModelId, ModelSelection, Registry
from app.routes import classify, docs, hf, inference, openai, ops, tei
from app.runtime import ModelRuntime
from app.settings import Settings
from app.tokenizer import TextTokenizer
from app.workers import WorkerPool

log = logging.getLogger("distilserve")


class StartupError(Exception):
    """The server cannot start with this configuration; the message is for the operator."""


# Builds one model's backend; tests pass fakes. Arguments: model directory, manifest, options, shape limits.
BackendFactory = Callable[[Path, Manifest, ModelOptions, ShapeLimits], Backend]


def select_models(settings: Settings) -> list[ModelSelection]:
    """The model directories to serve, in order, each with why."""
    try:
        resolved = resolve_model_dirs(settings.model_dir, settings.model_source, settings.cache_dir)
    except ModelSourceError as error:
        raise StartupError(str(error)) from None
    return [ModelSelection(str(model.path), model.reason, model.demo) for model in resolved]


def build_registry(
    settings: Settings, metrics: Metrics, workers: WorkerPool, backend_factory: BackendFactory | None
) -> Registry:
    overrides = _read_overrides(settings)
    selections = select_models(settings)
    manifests = [_trusted_manifest(Path(selection.path)) for selection in selections]
    unknown = sorted(set(overrides) - {manifest.model_id for manifest in manifests})
    if unknown:
        raise StartupError(
            f"models file {settings.models_file} names {unknown}, which no served model has "
            f"(served: {[manifest.model_id for manifest in manifests]})"
        )
    runtimes = []
    for selection, manifest in zip(selections, manifests, strict=True):
        try:
            options = options_for(manifest.model_id, settings.default_model_options(), overrides)
        except ModelsFileError as error:
            raise StartupError(str(error)) from None
        runtimes.append(
            build_runtime(Path(selection.path), manifest, options, settings, metrics, workers, backend_factory)
        )
    try:
        return Registry(runtimes, selections)
    except DuplicateModelId as error:
        raise StartupError(str(error)) from None


def _read_overrides(settings: Settings) -> dict[str, dict[str, Any]]:
    if settings.models_file is None:
        return {}
    try:
        return read_models_file(settings.models_file)
    except ModelsFileError as error:
        raise StartupError(str(error)) from None


def _trusted_manifest(path: Path) -> Manifest:
    """The manifest, with the tokenizer's checksum checked; each variant is checked when it is loaded."""
    try:
        manifest = verify_model_dir(path, variants=[])
    except ManifestError as error:
        raise StartupError(f"refusing to serve {path}: {error}") from None
    if "fill-mask" in manifest.tasks and manifest.special_tokens.mask is None:
        raise StartupError(f"refusing to serve {path}: fill-mask is listed but there is no mask token")
    return manifest


def build_runtime(
    path: Path,
    manifest: Manifest,
    options: ModelOptions,
    settings: Settings,
    metrics: Metrics,
    workers: WorkerPool,
    backend_factory: BackendFactory | None,
) -> ModelRuntime:
    max_length = options.max_input_length or manifest.max_length
    if max_length > manifest.max_length:
        raise StartupError(
            f"{manifest.model_id}: max_input_length {max_length} exceeds the model's max_length "
            f"{manifest.max_length} (the position table)"
        )
    if max_length > options.max_batch_tokens:
        raise StartupError(
            f"{manifest.model_id}: max_batch_tokens {options.max_batch_tokens} is below the max input length {max_length}"
        )
    tokenizer = TextTokenizer(
        model_file(path, manifest.tokenizer_file), manifest.special_tokens, max_length, manifest.clean_up_tokenization_spaces
    )
    limits = ShapeLimits(options.max_batch_size, options.max_batch_tokens, max_length)
    try:
        if backend_factory is not None:
            backend = backend_factory(path, manifest, options, limits)
        else:
            backend = open_backend(path, manifest, options, limits, settings.trt_cache_path)
    except (ProviderError, ManifestError) as error:
        raise StartupError(f"{manifest.model_id}: {error}") from None
    info = backend.info
    log.info(
        "serving %s (%s, %s) on %s; tasks %s; max input %d tokens",
        manifest.model_id, info.variant, info.dtype, info.providers, manifest.tasks, max_length,
    )
    model_metrics = metrics.for_model(manifest.model_id)
    model_metrics.describe_backend(info.variant, info.dtype, info.providers, __version__)
    return ModelRuntime(manifest, options, tokenizer, backend, model_metrics, workers, settings.retry_after_s)


class RequestGuard:
    """Outermost ASGI layer: body-size limit and deadline, request counts, and the last-resort 500.

    A pure ASGI middleware (not BaseHTTPMiddleware) so streaming and cancellation stay intact and an
    unexpected exception never reaches the server's default handler (which would re-raise it).

    Body refusals on the request's headers (a Content-Length over the limit, a Content-Encoding or
    Content-Type the server cannot read: `media_refusal`) are raised when the route first reads the
    body, before anything is read: so they come after routing and the API key check, are counted under
    the route they were for, and reach `failures` through the error handlers like every other error.
    The errors this layer answers itself it counts itself.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout_s: float, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = {"status": 500, "started": False}

        async def send_tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
            await send(message)

        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        received = 0
        body_complete = False
        deadline = asyncio.get_running_loop().time() + self.body_timeout_s

        async def receive_limited() -> Message:
            nonlocal received, body_complete
            if body_complete:  # later receives only wait for a disconnect: no deadline for those
                return await receive()
            if not received:  # refused on its headers, before a byte of the body is read
                media_refusal(headers)
                if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                    raise PayloadTooLarge(self._too_large())
            try:
                message = await asyncio.wait_for(receive(), deadline - asyncio.get_running_loop().time())
            except TimeoutError:
                raise RequestTimeout(f"the request body did not arrive within {self.body_timeout_s:g} s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_complete = not message.get("more_body", False)
                if received > self.max_body_bytes:
                    raise PayloadTooLarge(self._too_large())
            return message

        try:
            await self.app(scope, receive_limited, send_tracked)
        except asyncio.CancelledError:
            # Only the server cancels a request task: its graceful-shutdown timeout ran out (the runtime has
            # dropped the request's queued inputs on the way out). Answer rather than go silent; nothing
            # above this layer waits for the cancellation.
            await self._fail(scope, send_tracked, "unhealthy", "the server is shutting down", answer=not state["started"])
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope["path"])
            await self._fail(scope, send_tracked, "internal", GENERIC_500, answer=not state["started"])
        finally:
            self._count(scope, state["status"])

    def _too_large(self) -> str:
        return f"request body over the {self.max_body_bytes}-byte limit"

    def _count(self, scope: Scope, status: int) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        self.metrics.requests.labels(template, str(status), _model_of(scope)).inc()

    async def _fail(self, scope: Scope, send: Send, kind: str, message: str, answer: bool) -> None:
        """Count the error once and, unless a response has begun, answer it in the JSON error shape."""
        self.metrics.failures.labels(kind, _model_of(scope)).inc()
        if not answer:
            return
        body = json.dumps(error_body(kind, message, scope["path"])).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status_for(kind),
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def media_refusal(headers: dict[bytes, bytes]) -> None:
    """Raise UnsupportedMedia for a body the routes cannot read: a content coding (gzip, br, ...: there
    is no decoder here, and a compressed body would otherwise fail as malformed JSON), or a Content-Type
    that is not JSON. A request that declares no body is left to the route (422 for a missing body)."""
    codings = [part.strip().lower() for part in headers.get(b"content-encoding", b"").decode("latin-1").split(",")]
    unsupported = [coding for coding in codings if coding not in ("", "identity")]
    if unsupported:
        raise UnsupportedMedia(
            f"Content-Encoding {', '.join(unsupported)} is not supported: send the body uncompressed",
            headers={"Accept-Encoding": "identity"},
        )
    if headers.get(b"content-length", b"0") == b"0" and b"transfer-encoding" not in headers:
        return
    content_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip()
    if not content_type:
        raise UnsupportedMedia("the body has no Content-Type: send JSON with Content-Type: application/json")
    if not is_json(content_type):
        raise UnsupportedMedia(f"Content-Type {content_type!r} is not supported: send JSON with Content-Type: application/json")


def is_json(content_type: str) -> bool:
    """application/json or application/*+json, with any parameters (FastAPI's rule for parsing JSON)."""
    media_type = content_type.split(";")[0].strip().lower()
    main, _, sub = media_type.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def _model_of(scope: Scope) -> str:
    """The model a route resolved for this request (`request.state.model`), empty before that."""
    return str(scope.get("state", {}).get("model", ""))


def auth_responses(router: APIRouter, enforced: bool) -> dict[int | str, dict[str, Any]]:
    """The 401 entry for a protected router's routes in OpenAPI, only when a key is enforced."""
    if not enforced:
        return {}
    # A router's routes share one error style (the OpenAI router holds exactly the OpenAI-style paths).
    body = error_body_model(getattr(router.routes[0], "path", ""))
    return error_responses("unauthorized", body=body, common=())


def create_app(settings: Settings, backend_factory: BackendFactory | None = None) -> FastAPI:
    started = time.perf_counter()
    metrics = Metrics()
    workers = WorkerPool(settings.worker_threads)
    registry = build_registry(settings, metrics, workers, backend_factory)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await registry.start()
        try:
            yield
        finally:
            # Uvicorn has stopped accepting and finished in-flight requests by now, or cancelled those left
            # at its graceful-shutdown timeout (each answered 503 by RequestGuard); drain the rest.
            await registry.stop()
            workers.close()
            log.info("stopped")

    app = FastAPI(
        title="distilserve",
        version=__version__,
        summary="Fill-mask and embeddings for DistilBERT-class encoders on ONNX Runtime, with dynamic batching.",
        lifespan=lifespan,
        docs_url=None,  # docs.install_docs serves it with local assets
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.metrics = metrics
    app.state.workers = workers
    install_error_handlers(app, on_error=lambda kind, model: metrics.failures.labels(kind, model).inc())
    # Probes, the docs and the widget stay open. Inference routers (and /info and /metrics when asked) need
    # the API key, which ApiKeyGuard checks before routing, so no body is read without it.
    security = openapi_security(settings.api_key)
    app.include_router(ops.probes)
    routers = [inference.router, classify.router, openai.router, tei.router, hf.router]
    if settings.protect_info_metrics:
        routers.insert(0, ops.router)
    else:
        app.include_router(ops.router)
    protected: list[BaseRoute] = []
    for router in routers:
        app.include_router(router, dependencies=security, responses=auth_responses(router, bool(security)))
        protected += router.routes  # unprefixed: each matches a request exactly as the app's router will
    app.include_router(widget.router)
    docs.install_docs(app)
    if key_enforced(settings.api_key):
        refused = metrics.failures.labels("unauthorized", "")
        app.add_middleware(ApiKeyGuard, api_key=settings.api_key, protected=protected, on_refused=refused.inc)
    # Added last, so outermost: it counts and guards every request, the refused ones included.
    app.add_middleware(
        RequestGuard, max_body_bytes=settings.max_body_bytes, body_timeout_s=settings.body_timeout_s, metrics=metrics
    )
    log.info("%d model(s) loaded in %.2fs: %s", len(registry), time.perf_counter() - started, ", ".join(registry.ids))
    return app


def app_factory() -> FastAPI:
    """For `uvicorn --factory app.server:app_factory`: settings from DISTILSERVE_* env vars."""
    return create_app(Settings())
