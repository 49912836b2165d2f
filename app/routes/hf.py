"""POST /: the endpoint huggingface_hub's `InferenceClient(model="http://host:port")` talks to.

That client posts every task to the bare URL. `fill_mask` always sends a `parameters` key;
`feature_extraction` sends its options at the root (TEI's /embed body) and never `parameters`. So the
body's shape picks the task, and the answer is the same bare JSON list /fill-mask or /embed returns.

`text_classification` and `token_classification` send `parameters` too, so their bodies look like
fill-mask's: for them the model decides. The model the request names (`?model=` or the body's `model`),
else the first configured one, answers with its classification task when it is a classifier.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Discriminator, GetJsonSchemaHandler, Tag, ValidationError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from app.classifier import TEXT_CLASSIFICATION, TOKEN_CLASSIFICATION
from app.registry import ANY_TASK
from app.routes import classify, inference
from app.routes.common import ModelQuery, registry_of, runtime_for
from app.schemas import EmbedRequest, FillMaskCandidate, FillMaskRequest

router = APIRouter(tags=["huggingface"])

Model = TypeVar("Model", bound=BaseModel)

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
    | list[list[list[FillMaskCandidate]]]
    | list[list[classify.LabelScore]]
    | list[classify.Entity]
    | list[list[classify.Entity]],
    response_model_exclude_none=True,
    summary="Hugging Face InferenceClient endpoint: fill-mask when the body has `parameters`, else embeddings",
    description=(
        "`{\"inputs\": ..., \"parameters\": {...}}` is answered like POST /fill-mask; any other body "
        "(`{\"inputs\": ..., \"normalize\": true, ...}`) like POST /embed. Both return bare JSON lists. "
        "When the model (named, else the first configured) is a classifier, the body is read as "
        "POST /classify's and answered as the Inference API does (a list of all labels, best first, per input, "
        "inside a list), or as POST /token-classification's (entities grouped `simple` unless the body says)."
    ),
    responses=inference.INFERENCE_ERRORS,
)
async def infer(body: Annotated[InferenceBody, Body()], request: Request, model: ModelQuery = None) -> Response:
    task = _classification_task(request, body.model, model)
    if task == TEXT_CLASSIFICATION:
        parsed = await _reparse(request, classify.ClassifyRequest)
        return await classify.text_classification(parsed, request, model, hub=True)
    if task == TOKEN_CLASSIFICATION:
        parsed = await _reparse(request, classify.TokenClassificationRequest)
        return await classify.token_classification(parsed, request, model, default_strategy="simple")
    if isinstance(body, FillMaskRequest):
        return await inference.fill_mask(body, request, model)
    return await inference.embed(body, request, model)


def _classification_task(request: Request, body_model: str | None, query_model: str | None) -> str | None:
    """The classification task of the model this request is for, or None when that model is no classifier."""
    if body_model is None and query_model is None:
        runtime = registry_of(request).default
    else:
        runtime = runtime_for(request, body_model, query_model, ANY_TASK)
    return next((task for task in (TEXT_CLASSIFICATION, TOKEN_CLASSIFICATION) if task in runtime.tasks), None)


async def _reparse(request: Request, schema: type[Model]) -> Model:
    """The body again, as the classifier's request (the union above read it as fill-mask or embed)."""
    try:
        return schema.model_validate_json(await request.body())
    except ValidationError as error:
        raise RequestValidationError([{**item, "loc": ("body", *item["loc"])} for item in error.errors()]) from None
