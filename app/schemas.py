"""Request and response models. Strict types: a wrong type is a 422 that names the field.

The schemas state every limit that does not depend on the model: text is not blank, lists are not
empty, token ids and `top_k` are not negative, `dimensions` is at least 1. Pydantic enforces the type
and size caps; most of these limits are enforced after parsing (`documented`), by the layer that names
the model's own bound in the same message, or answers as TEI does (an empty or blank input is a 400
`empty` from the tokenizer, which pydantic cannot say). Limits that depend on the model (its max
length, hidden size, vocabulary, mask token, max_top_k, max_inputs_per_request: all in /info) are in
the field descriptions; breaking one is a 422.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.model_config import SCHEMA_MAX_INPUTS, SCHEMA_MAX_TOKEN_IDS

# What str.isspace() calls whitespace, spelled out so the schema's pattern says what the tokenizer checks.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
NOT_BLANK = f"[^{WHITESPACE}]"


def _whole_number(value: Any) -> Any:
    """5.0 is an integer to JSON Schema (and to JavaScript); strict pydantic would refuse it."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Integers as JSON Schema means them (a number with no fraction; strings and booleans stay refused).
# Placed after a type's constraints, so pydantic still writes them as JSON Schema keywords.
WHOLE_NUMBER = BeforeValidator(_whole_number)


def documented(**keywords: Any) -> Any:
    """A limit the schema states but a later layer enforces (with TEI's status, or the model's bounds)."""
    return Field(json_schema_extra=keywords)


# Text to embed or fill: at least one character that is not whitespace.
InputText = Annotated[str, documented(minLength=1, pattern=NOT_BLANK)]
# Capped lists: a huge list is one parse error, not thousands of per-item errors built on the event loop.
InputTexts = Annotated[list[InputText], Field(max_length=SCHEMA_MAX_INPUTS, json_schema_extra={"minItems": 1})]
Targets = InputTexts | InputText
Texts = Annotated[list[str], Field(max_length=SCHEMA_MAX_INPUTS)]
TokenId = Annotated[int, documented(minimum=0), WHOLE_NUMBER]
TokenIdList = Annotated[list[TokenId], Field(max_length=SCHEMA_MAX_TOKEN_IDS)]
Dimensions = Annotated[int, Field(ge=1), WHOLE_NUMBER]

MODEL_FIELD_DESCRIPTION = (
    "The model to use (its id in /v1/models); a model not served here is a 404 `model_not_found`. "
    "Unset: the first model that serves this task."
)
INPUT_LIMITS = (
    "At most the model's `max_client_batch_size` inputs, each at most its `max_input_length` tokens "
    "(see /info)."
)


class ModelRequest(BaseModel):
    # Unknown fields are ignored like TEI does (clients add options we do not know); types are strict.
    model_config = ConfigDict(strict=True, extra="ignore")

    model: str | None = Field(default=None, description=MODEL_FIELD_DESCRIPTION)


class FillMaskParameters(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    top_k: Annotated[int, documented(minimum=0), WHOLE_NUMBER] = Field(
        default=5, description="Candidates per mask, highest score first; at most the model's `max_top_k` (/info)."
    )
    targets: Targets | None = Field(
        default=None,
        description=(
            "Only score these tokens (a word outside the vocabulary uses its first piece). A target the "
            "model's vocabulary cannot spell at all is dropped; when none is left, 422."
        ),
    )


class FillMaskRequest(ModelRequest):
    inputs: InputText | InputTexts = Field(
        description="Text(s), each with at least one of the model's mask token (/info `mask_token`). " + INPUT_LIMITS
    )
    parameters: FillMaskParameters = Field(default_factory=FillMaskParameters)


class FillMaskCandidate(BaseModel):
    score: float
    token: int
    token_str: str
    sequence: str


class EmbedRequest(ModelRequest):
    inputs: InputText | InputTexts = Field(description=INPUT_LIMITS)
    normalize: bool = Field(default=True, description="L2-normalize each embedding.")
    truncate: bool = Field(default=False, description="Cut inputs over the max length instead of refusing them.")
    truncation_direction: Literal["right", "left", "Right", "Left"] = Field(
        default="right", description="Which end to cut when truncating: right keeps the start."
    )
    dimensions: Dimensions | None = Field(
        default=None, description="Keep the first N dimensions (then normalize); at most the model's `hidden_size` (/info)."
    )


class ErrorBody(BaseModel):
    """The error body on every route but the OpenAI ones."""

    error: str
    error_type: str = Field(description="The error kind (TEI's error_type vocabulary plus ours).")


class OpenAIError(BaseModel):
    message: str
    type: str = Field(description="OpenAI's error type, e.g. invalid_request_error.")
    code: str = Field(description="distilserve's error kind (TEI's error_type vocabulary).")


class OpenAIErrorBody(BaseModel):
    """The error body on /v1/embeddings and /embeddings, as the openai client reads it."""

    error: OpenAIError


class Health(BaseModel):
    status: Literal["ok", "unhealthy"]


class Ready(BaseModel):
    ready: bool
    reason: str | None = Field(default=None, description="Why not, for the first model that is not ready.")
    models: dict[str, str] | None = Field(default=None, description="Each model that is not ready, with why.")


class CostModelInfo(BaseModel):
    """The batch planner's estimate of what a padded batch costs (app/cost_model.py)."""

    overhead_ms: float = Field(description="Fixed cost of one batch.")
    per_token_us: float = Field(description="Cost of each padded token.")
    per_token_length_ns: float = Field(description="Cost of each padded token per token of padded length (attention).")
    source: Literal["calibrated", "default"] = Field(
        description="`calibrated`: timed on this model and machine at warm-up; `default`: not measured (warm-up off)."
    )
    shapes: list[list[int]] = Field(description="The (rows, length) batch shapes timed.")
    repeats: int = Field(description="Timed runs per shape; the fastest counts.")
    fit_error: float | None = Field(description="Root-mean-square relative error of the fit over the shapes.")


class ModelInfo(BaseModel):
    """One served model (TEI's /info fields, per model)."""

    model_id: str
    model_sha: str | None = Field(description="Source revision, when the export knew it.")
    model_dtype: str
    model_type: dict[str, dict[str, Any]] = Field(
        description="TEI's: embedding or fill_mask (pooling), classifier or reranker (id2label, label2id), token_classifier."
    )
    tasks: list[str]
    variant: str
    providers: list[str] = Field(description="Execution providers the session actually runs on.")
    requested_providers: list[str]
    io_binding: bool
    padding_free: bool = Field(description="True when the backend runs batches without padding.")
    pooling: str
    hidden_size: int
    max_input_length: int
    max_batch_tokens: int
    max_batch_requests: int
    max_client_batch_size: int
    max_concurrent_requests: int
    max_queue_ms: float | None
    max_top_k: int
    mask_token: str | None = Field(description="The token fill-mask inputs must contain; null without an MLM head.")
    demo: bool = Field(description="True for the offline demo model (an MLM head trained here, not the original).")
    model_selection_reason: str
    ready: bool
    inference_workers: int = Field(description="Batches this model runs at once on its one session.")
    intra_op_threads: int = Field(description="onnxruntime intra-op threads of each run (0: onnxruntime's choice).")
    cost_model: CostModelInfo | None = Field(
        description="What the planner believes a padded batch costs; null for a padding-free backend."
    )


class Info(ModelInfo):
    """The first configured model's fields at the top level (what TEI clients read), then the server's,
    then every model."""

    tokenization_workers: int = Field(description="Threads that tokenize and post-process, off the event loop.")
    auto_truncate: bool
    version: str
    sha: str | None = Field(description="The server build's git commit (TEI's `sha`), from DISTILSERVE_BUILD_SHA; null if unset.")
    docker_label: str | None = Field(description="The image label (TEI's `docker_label`), from DISTILSERVE_DOCKER_LABEL.")
    models: list[ModelInfo] = Field(description="Every served model, the default (first) one included.")


class ModelCard(BaseModel):
    """OpenAI's model object, as GET /v1/models lists it."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="When the model was exported (Unix seconds).")
    owned_by: str
    tasks: list[str] = Field(
        description="What the model serves: embed, fill-mask, text-classification or token-classification (distilserve's addition)."
    )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
