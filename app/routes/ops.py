"""Operational routes: liveness, readiness, info, metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: N811

from app import __version__
from app.routes.common import engine_of
from app.schemas import Health, Info, Ready

router = APIRouter(tags=["operations"])


@router.get(
    "/health",
    response_model=Health,
    summary="Liveness: 503 once the engine cannot recover",
    responses={503: {"model": Health, "description": "`unhealthy`: warm-up failed or the batching loop died"}},
)
async def health(request: Request) -> JSONResponse:
    alive = engine_of(request).alive
    return JSONResponse({"status": "ok" if alive else "unhealthy"}, status_code=200 if alive else 503)


@router.get(
    "/ready",
    response_model=Ready,
    summary="Readiness: true only after warm-up, while the batcher runs",
    responses={503: {"model": Ready, "description": "not ready; `reason` says why (warming up, failed, stopped)"}},
)
async def ready(request: Request) -> JSONResponse:
    engine = engine_of(request)
    if engine.ready:
        return JSONResponse({"ready": True})
    if engine.warmup_error is not None:
        reason = "warm-up failed"
    elif not engine.warmed:
        reason = "warming up"
    else:
        reason = "the batching loop has stopped"
    return JSONResponse({"ready": False, "reason": reason}, status_code=503)


@router.get("/info", response_model=Info, summary="What is served, on what, within which limits")
async def info(request: Request) -> Info:
    engine = engine_of(request)
    manifest, settings, backend = engine.manifest, engine.settings, engine.backend.info
    selection = request.app.state.model_selection
    mask = manifest.special_tokens.mask
    return Info(
        model_id=manifest.model_id,
        model_sha=manifest.source.revision,
        model_dtype=backend.dtype,
        model_type={"fill_mask" if "fill-mask" in manifest.tasks else "embedding": {"pooling": manifest.pooling}},
        tasks=list(manifest.tasks),
        variant=backend.variant,
        providers=backend.providers,
        requested_providers=backend.requested_providers,
        io_binding=backend.io_binding,
        pooling=manifest.pooling,
        hidden_size=manifest.arch.hidden_size,
        max_input_length=engine.tokenizer.max_length,
        max_batch_tokens=settings.max_batch_tokens,
        max_batch_requests=settings.max_batch_size,
        max_client_batch_size=settings.max_inputs_per_request,
        max_concurrent_requests=settings.max_queue,
        max_top_k=settings.max_top_k,
        mask_token=mask.token if mask is not None else None,
        tokenization_workers=engine.tokenization_workers,
        auto_truncate=False,
        demo=selection.demo or manifest.demo,
        model_selection_reason=selection.reason,
        version=__version__,
        sha=settings.build_sha,
        docker_label=settings.docker_label,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics, in the text exposition format",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}},
)
async def metrics(request: Request) -> Response:
    engine = engine_of(request)
    engine.metrics.queue_depth.set(engine.batcher.queue_depth)
    engine.metrics.ready.set(1 if engine.ready else 0)
    return Response(engine.metrics.render(), media_type=CONTENT_TYPE)
