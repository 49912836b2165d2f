"""POST /: the endpoint huggingface_hub's `InferenceClient(model="http://host:port")` talks to.

That client posts every task to the bare URL. `fill_mask` always sends a `parameters` key;
`feature_extraction` sends its options at the root (TEI's /embed body) and never `parameters`. So the
body's shape picks the task, and the answer is the same bare JSON list /fill-mask or /embed returns.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response
from pydantic import Discriminator, Tag

from app.routes import inference
from app.routes.common import ModelQuery
from app.schemas import EmbedRequest, FillMaskCandidate, FillMaskRequest

router = APIRouter(tags=["huggingface"])

FILL_MASK = "fill-mask"
FEATURE_EXTRACTION = "feature-extraction"


def task_of(body: Any) -> str:
    """A body with `parameters` is fill-mask; anything else is feature extraction."""
    if isinstance(body, dict):
        return FILL_MASK if "parameters" in body else FEATURE_EXTRACTION
    return FILL_MASK if hasattr(body, "parameters") else FEATURE_EXTRACTION


InferenceBody = Annotated[
    Annotated[FillMaskRequest, Tag(FILL_MASK)] | Annotated[EmbedRequest, Tag(FEATURE_EXTRACTION)],
    Discriminator(task_of),
]


@router.post(
    "/",
    response_model=list[list[float]]
    | list[FillMaskCandidate]
    | list[list[FillMaskCandidate]]
    | list[list[list[FillMaskCandidate]]],
    summary="Hugging Face InferenceClient endpoint: fill-mask when the body has `parameters`, else embeddings",
    description=(
        "`{\"inputs\": ..., \"parameters\": {...}}` is answered like POST /fill-mask; any other body "
        "(`{\"inputs\": ..., \"normalize\": true, ...}`) like POST /embed. Both return bare JSON lists."
    ),
    responses=inference.INFERENCE_ERRORS,
    # The validator picks by shape (a discriminator), but FastAPI documents that as oneOf, which no body can
    # satisfy since an embed body also matches FillMaskRequest's optional fields: anyOf is the truth.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/FillMaskRequest"},
                            {"$ref": "#/components/schemas/EmbedRequest"},
                        ]
                    }
                }
            },
        }
    },
)
async def infer(body: Annotated[InferenceBody, Body()], request: Request, model: ModelQuery = None) -> Response:
    if isinstance(body, FillMaskRequest):
        return await inference.fill_mask(body, request, model)
    return await inference.embed(body, request, model)
