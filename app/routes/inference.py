"""POST /fill-mask and POST /embed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.errors import error_responses
from app.routes.common import ModelQuery, cancel_on_disconnect, json_response, runtime_for
from app.schemas import EmbedRequest, FillMaskCandidate, FillMaskRequest

router = APIRouter(tags=["inference"])

# Everything that goes through the tokenizer and the batcher (also POST /, which answers like these).
INFERENCE_ERRORS = error_responses("empty", "tokenizer", "model_not_found", "overloaded", "unhealthy", "backend")


@router.post(
    "/fill-mask",
    response_model=list[FillMaskCandidate] | list[list[FillMaskCandidate]] | list[list[list[FillMaskCandidate]]],
    summary="Fill the mask token, answered exactly like transformers' fill-mask pipeline",
    responses=INFERENCE_ERRORS,
)
async def fill_mask(body: FillMaskRequest, request: Request, model: ModelQuery = None) -> Response:
    runtime = runtime_for(request, body.model, model, "fill-mask")
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    targets = body.parameters.targets
    if isinstance(targets, str):
        targets = [targets]
    answers, timings = await cancel_on_disconnect(
        request, runtime.fill_mask(texts, top_k=body.parameters.top_k, targets=targets)
    )
    # The pipeline unwraps a one-element list as it does a string.
    content: Any = answers[0] if isinstance(body.inputs, str) or len(body.inputs) == 1 else answers
    return await json_response(request, content, timings, size=4 * _candidates(answers))


def _candidates(answers: list[Any]) -> int:
    """Candidates in fill-mask answers (a list per input, or per mask when an input has several)."""
    return sum(len(answer) if not answer or isinstance(answer[0], dict) else sum(map(len, answer)) for answer in answers)


@router.post(
    "/embed", response_model=list[list[float]], summary="Embeddings, TEI's /embed", responses=INFERENCE_ERRORS
)
async def embed(body: EmbedRequest, request: Request, model: ModelQuery = None) -> Response:
    runtime = runtime_for(request, body.model, model, "embed")
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    vectors, timings = await cancel_on_disconnect(
        request,
        runtime.embed(
            texts,
            normalize=body.normalize,
            truncate=body.truncate,
            direction="left" if body.truncation_direction.lower() == "left" else "right",
            dimensions=body.dimensions,
        ),
    )
    return await json_response(request, vectors, timings, size=len(vectors) * len(vectors[0]) if vectors else 0)
