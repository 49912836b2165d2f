"""Classifier routes: TEI's POST /predict and POST /rerank, and POST /classify and POST /token-classification
in the JSON of transformers' text- and token-classification pipelines."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from app import classifier
from app.classification import Aggregation
from app.classifier import TEXT_CLASSIFICATION, TOKEN_CLASSIFICATION
from app.model_config import SCHEMA_MAX_INPUTS
from app.routes.common import ModelQuery, cancel_on_disconnect, json_response, runtime_for
from app.routes.inference import INFERENCE_ERRORS
from app.runtime import RERANK
from app.schemas import WHOLE_NUMBER, InputText, InputTexts, ModelRequest, documented
from app.tokenizer import Direction, Pair

router = APIRouter(tags=["classification"])

INPUT_LIMITS = "At most the model's `max_client_batch_size` inputs (see /info)."
TRUNCATE = "Cut inputs over the max length (a pair: its longer text first) instead of refusing them."
DIRECTION = "Which end to cut when truncating: right keeps the start."

# TEI's sequence: a text alone, or a pair [text, text_pair].
TeiSequence = Annotated[list[InputText], Field(min_length=1, max_length=2)]
TeiBatch = Annotated[list[TeiSequence], Field(max_length=SCHEMA_MAX_INPUTS, json_schema_extra={"minItems": 1})]
TruncationDirection = Literal["right", "left", "Right", "Left"]


def _direction(value: str) -> Direction:
    return "left" if value.lower() == "left" else "right"


class PredictRequest(ModelRequest):
    inputs: InputText | TeiSequence | TeiBatch = Field(
        description=(
            "A text, a pair `[text, text_pair]`, or a batch of those as lists (`[[\"a\"], [\"b\", \"c\"]]`), as in "
            "TEI. " + INPUT_LIMITS
        ),
        examples=["I like you.", ["A man is eating.", "Someone eats."]],
    )
    truncate: bool | None = Field(default=False, description=TRUNCATE)
    truncation_direction: TruncationDirection = Field(default="right", description=DIRECTION)
    raw_scores: bool = Field(
        default=False, description="Logits as they are; else softmax over the labels (sigmoid for one label), as TEI."
    )


class Prediction(BaseModel):
    score: float
    label: str


class RerankRequest(ModelRequest):
    query: InputText = Field(examples=["What is Deep Learning?"])
    texts: Annotated[list[InputText], Field(max_length=SCHEMA_MAX_INPUTS, json_schema_extra={"minItems": 1})] = Field(
        description="Texts to rank against the query (at least one). " + INPUT_LIMITS,
        examples=[["Deep Learning is not...", "Deep learning is..."]],
    )
    truncate: bool | None = Field(default=False, description=TRUNCATE)
    truncation_direction: TruncationDirection = Field(default="right", description=DIRECTION)
    raw_scores: bool = Field(default=False, description="The logit as it is; else its sigmoid, as TEI.")
    return_text: bool = Field(default=False, description="Repeat each text in its rank.")


class Rank(BaseModel):
    index: int = Field(description="The text's position in `texts`.")
    text: str | None = Field(default=None, description="Only with `return_text`.")
    score: float


class TextPair(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    text: InputText
    text_pair: InputText | None = None


ClassifyInput = InputText | TextPair


class ClassifyParameters(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    top_k: Annotated[int, documented(minimum=0), WHOLE_NUMBER] | None = Field(
        default=None,
        description=(
            "Labels per input, best first; null: all of them. Left out, each input gets its best label alone "
            "(as a bare object, not a list), exactly as the pipeline answers."
        ),
    )
    function_to_apply: Literal["sigmoid", "softmax", "none"] | None = Field(
        default=None,
        description="Unset: the checkpoint's (none for regression, sigmoid for multi-label or one label, else softmax).",
    )


class ClassifyRequest(ModelRequest):
    inputs: ClassifyInput | Annotated[list[ClassifyInput], Field(max_length=SCHEMA_MAX_INPUTS, json_schema_extra={"minItems": 1})] = Field(
        description="A text, a pair `{\"text\", \"text_pair\"}`, or a list of those. " + INPUT_LIMITS,
        examples=["I like you.", {"text": "A man is eating.", "text_pair": "Someone eats."}],
    )
    parameters: ClassifyParameters = Field(default_factory=ClassifyParameters)


class LabelScore(BaseModel):
    label: str
    score: float


ClassifyResponse = LabelScore | list[LabelScore] | list[list[LabelScore]]


class TokenClassificationParameters(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    aggregation_strategy: Literal["none", "simple", "first", "average", "max"] = Field(
        default="none",
        description="none: every token; simple: adjacent tokens of one entity grouped; first/average/max: words first.",
    )
    ignore_labels: list[str] = Field(default=["O"], description="Labels left out of the answer.")


class TokenClassificationRequest(ModelRequest):
    inputs: InputText | InputTexts = Field(description=INPUT_LIMITS, examples=["My name is Sarah and I live in London"])
    parameters: TokenClassificationParameters = Field(default_factory=TokenClassificationParameters)


class Entity(BaseModel):
    entity: str | None = Field(default=None, description="The token's label (aggregation_strategy none).")
    entity_group: str | None = Field(default=None, description="The group's label, B-/I- removed (aggregated).")
    score: float
    index: int | None = Field(default=None, description="The token's position (aggregation_strategy none).")
    word: str
    start: int = Field(description="Character offset of the first character in the input.")
    end: int


def _sequences(inputs: Any) -> tuple[list[str | Pair], bool]:
    """TEI's inputs as a list of texts and pairs, and whether the request was a batch."""
    if isinstance(inputs, str):
        return [inputs], False
    if inputs and isinstance(inputs[0], str):
        return [_sequence(inputs)], False
    return [_sequence(item) for item in inputs], True


def _sequence(item: list[str]) -> str | Pair:
    return item[0] if len(item) == 1 else (item[0], item[1])


@router.post(
    "/predict",
    response_model=list[Prediction] | list[list[Prediction]],
    summary="Classify a text or a pair, TEI's /predict: every label, best first",
    responses=INFERENCE_ERRORS,
)
async def predict(body: PredictRequest, request: Request, model: ModelQuery = None) -> Response:
    runtime = runtime_for(request, body.model, model, TEXT_CLASSIFICATION)
    inputs, batch = _sequences(body.inputs)
    answers, timings = await cancel_on_disconnect(
        request,
        classifier.predict(
            runtime, inputs, raw_scores=body.raw_scores, truncate=bool(body.truncate),
            direction=_direction(body.truncation_direction),
        ),
    )
    content = answers if batch else answers[0]
    return await json_response(request, content, timings, size=2 * sum(map(len, answers)))


@router.post(
    "/rerank",
    response_model=list[Rank],
    response_model_exclude_none=True,
    summary="Rank texts against a query with a single-logit pair classifier, TEI's /rerank",
    responses=INFERENCE_ERRORS,
)
async def rerank(body: RerankRequest, request: Request, model: ModelQuery = None) -> Response:
    runtime = runtime_for(request, body.model, model, RERANK)
    ranks, timings = await cancel_on_disconnect(
        request,
        classifier.rerank(
            runtime, body.query, body.texts, raw_scores=body.raw_scores, truncate=bool(body.truncate),
            direction=_direction(body.truncation_direction), return_text=body.return_text,
        ),
    )
    return await json_response(request, ranks, timings, size=3 * len(ranks))


def _classify_inputs(inputs: Any) -> tuple[list[str | Pair], bool]:
    """The pipeline's inputs as texts and pairs, and whether they came as a list."""
    items = inputs if isinstance(inputs, list) else [inputs]
    flat: list[str | Pair] = []
    for item in items:
        if isinstance(item, str):
            flat.append(item)
        else:
            flat.append(item.text if item.text_pair is None else (item.text, item.text_pair))
    return flat, isinstance(inputs, list)


async def text_classification(body: ClassifyRequest, request: Request, model: str | None, *, hub: bool) -> Response:
    """The pipeline's answer, or (`hub`) the Inference API's: a list of labels per input, all of them unless
    top_k says otherwise, and a single input's list inside a list (InferenceClient reads element 0)."""
    runtime = runtime_for(request, body.model, model, TEXT_CLASSIFICATION)
    inputs, listed = _classify_inputs(body.inputs)
    given = "top_k" in body.parameters.model_fields_set
    top_k = body.parameters.top_k if given else None
    best_only = not hub and not given
    answers, timings = await cancel_on_disconnect(
        request,
        classifier.classify(
            runtime, inputs, function=body.parameters.function_to_apply, top_k=top_k, best_only=best_only
        ),
    )
    content: Any
    if hub or listed:  # the Inference API wraps a single input's labels in a list too
        content = answers
    elif best_only:
        # The pipeline wraps a plain text's best label in a list, but not a pair's.
        content = [answers[0]] if isinstance(body.inputs, str) else answers[0]
    else:
        content = answers[0]
    size = len(answers) if best_only else 2 * sum(map(len, answers))
    return await json_response(request, content, timings, size=size)


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    summary="Classify texts or pairs, answered exactly like transformers' text-classification pipeline",
    responses=INFERENCE_ERRORS,
)
async def classify(body: ClassifyRequest, request: Request, model: ModelQuery = None) -> Response:
    return await text_classification(body, request, model, hub=False)


async def token_classification(
    body: TokenClassificationRequest, request: Request, model: str | None, *, default_strategy: Aggregation = "none"
) -> Response:
    """The pipeline's answer; `default_strategy` applies when the body names none (the Inference API
    groups entities, `simple`, where the pipeline lists tokens)."""
    runtime = runtime_for(request, body.model, model, TOKEN_CLASSIFICATION)
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    parameters = body.parameters
    chosen = parameters.aggregation_strategy if "aggregation_strategy" in parameters.model_fields_set else default_strategy
    answers, timings = await cancel_on_disconnect(
        request,
        classifier.token_classify(runtime, texts, strategy=chosen, ignore_labels=body.parameters.ignore_labels),
    )
    content = answers[0] if isinstance(body.inputs, str) else answers
    return await json_response(request, content, timings, size=6 * sum(map(len, answers)))


@router.post(
    "/token-classification",
    response_model=list[Entity] | list[list[Entity]],
    response_model_exclude_none=True,
    summary="Label each token or entity, answered exactly like transformers' token-classification pipeline",
    responses=INFERENCE_ERRORS,
)
async def token_classification_route(body: TokenClassificationRequest, request: Request, model: ModelQuery = None) -> Response:
    return await token_classification(body, request, model)
