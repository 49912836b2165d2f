"""POST /: the endpoint huggingface_hub's `InferenceClient(model="http://host:port")` talks to.

That client posts every task to the bare URL. `fill_mask` always sends a `parameters` key;
`feature_extraction` sends its options at the root (TEI's /embed body) and never `parameters`. So the
body's shape picks the task, and the answer is the same bare JSON list /fill-mask or /embed returns.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response
from pydantic import Discriminator, GetJsonSchemaHandler, Tag
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

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


class ChosenByParameters:
    """Documents `task_of` exactly: pydantic writes a callable discriminator as a bare oneOf, which no
    embed body satisfies (it matches FillMaskRequest's optional fields too, so both branches match).
    Here the fill-mask branch requires `parameters` and the embed branch forbids it, so every body
    matches one branch at most, the one the server picks."""

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        fill_mask, embed = handler(core_schema)["oneOf"]
        return {
            "oneOf": [
                {"allOf": [fill_mask], "required": ["parameters"]},
                {"allOf": [embed], "not": {"required": ["parameters"]}},
            ]
        }


InferenceBody = Annotated[
    Annotated[FillMaskRequest, Tag(FILL_MASK)] | Annotated[EmbedRequest, Tag(FEATURE_EXTRACTION)],
    Discriminator(task_of),
    ChosenByParameters(),
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
)
async def infer(body: Annotated[InferenceBody, Body()], request: Request, model: ModelQuery = None) -> Response:
    if isinstance(body, FillMaskRequest):
        return await inference.fill_mask(body, request, model)
    return await inference.embed(body, request, model)
