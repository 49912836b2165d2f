"""Operational routes: liveness and readiness (`probes`, always open), info and metrics (`router`, which
takes the API key when `protect_info_metrics` is set)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: N811

from app import __version__
from app.registry import Registry
from app.routes.common import registry_of
from app.runtime import ModelRuntime
from app.schemas import CostModelInfo, Health, Info, ModelInfo, Ready
from app.settings import Settings

probes = APIRouter(tags=["operations"])
router = APIRouter(tags=["operations"])


# Probes answer HEAD too: load balancers and uptime checkers often probe with it (RFC 9110: a server
# that answers GET should answer HEAD). The status is the same; the body is left out.
@probes.head(
    "/health",
    response_class=Response,
    summary="Liveness, status only",
    responses={200: {"description": "live"}, 503: {"description": "`unhealthy`"}},
)
@probes.get(
    "/health",
    response_model=Health,
    summary="Liveness: 503 once a model's runtime cannot recover",
    responses={503: {"model": Health, "description": "`unhealthy`: a warm-up failed or a batching loop died"}},
)
async def health(request: Request) -> JSONResponse:
    alive = registry_of(request).alive
    return JSONResponse({"status": "ok" if alive else "unhealthy"}, status_code=200 if alive else 503)


@probes.head(
    "/ready",
    response_class=Response,
    summary="Readiness, status only",
    responses={200: {"description": "ready"}, 503: {"description": "not ready"}},
)
@probes.get(
    "/ready",
    response_model=Ready,
    summary="Readiness: true only when every model is warm and its batcher runs",
    responses={503: {"model": Ready, "description": "not ready; `reason` says why (warming up, failed, stopped)"}},
)
async def ready(request: Request) -> JSONResponse:
    not_ready = registry_of(request).not_ready()
    if not not_ready:
        return JSONResponse({"ready": True})
    return JSONResponse({"ready": False, "reason": next(iter(not_ready.values())), "models": not_ready}, status_code=503)


def model_type(runtime: ModelRuntime) -> dict[str, dict[str, Any]]:
    """TEI's `model_type`: embedding (or fill_mask) with its pooling; classifier or, for one logit,
    reranker, with its labels; token_classifier (not a TEI type) likewise."""
    manifest = runtime.manifest
    classifier = manifest.classifier
    if classifier is None:
        return {"fill_mask" if "fill-mask" in manifest.tasks else "embedding": {"pooling": manifest.pooling}}
    kind = "token_classifier" if "token-classification" in manifest.tasks else "reranker" if runtime.is_reranker else "classifier"
    id2label = {str(index): label for index, label in sorted(classifier.id2label.items())}
    return {kind: {"id2label": id2label, "label2id": {label: int(index) for index, label in id2label.items()}}}


def model_info(registry: Registry, runtime: ModelRuntime) -> ModelInfo:
    manifest, options, backend = runtime.manifest, runtime.options, runtime.backend.info
    selection = registry.selections[runtime.model_id]
    mask = manifest.special_tokens.mask
    return ModelInfo(
        model_id=manifest.model_id,
        model_sha=manifest.source.revision,
        model_dtype=backend.dtype,
        model_type=model_type(runtime),
        tasks=list(manifest.tasks),
        variant=backend.variant,
        providers=backend.providers,
        requested_providers=backend.requested_providers,
        io_binding=backend.io_binding,
        padding_free=not runtime.backend.is_padded,
        pooling=manifest.pooling,
        hidden_size=manifest.arch.hidden_size,
        max_input_length=runtime.tokenizer.max_length,
        max_batch_tokens=options.max_batch_tokens,
        max_batch_requests=options.max_batch_size,
        max_client_batch_size=options.max_inputs_per_request,
        max_concurrent_requests=options.max_queue,
        max_queue_ms=options.max_queue_ms,
        max_top_k=options.max_top_k,
        mask_token=mask.token if mask is not None else None,
        demo=selection.demo or manifest.demo,
        model_selection_reason=selection.reason,
        ready=runtime.ready,
        inference_workers=runtime.inference_workers,
        intra_op_threads=options.intra_op_threads,
        cost_model=CostModelInfo(**runtime.cost_model.describe()) if runtime.cost_model is not None else None,
    )


@router.get("/info", response_model=Info, summary="What is served, on what, within which limits")
async def info(request: Request) -> Info:
    registry = registry_of(request)
    settings: Settings = request.app.state.settings
    models = [model_info(registry, runtime) for runtime in registry]
    return Info(
        **models[0].model_dump(),
        tokenization_workers=request.app.state.workers.threads,
        auto_truncate=False,
        version=__version__,
        sha=settings.build_sha,
        docker_label=settings.docker_label,
        models=models,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics, in the text exposition format",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}},
)
async def metrics(request: Request) -> Response:
    for runtime in registry_of(request):
        runtime.metrics.queue_depth.set(runtime.batcher.queue_depth)
        runtime.metrics.admitted_tokens.set(runtime.admission.tokens)
        runtime.metrics.ready.set(1 if runtime.ready else 0)
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
